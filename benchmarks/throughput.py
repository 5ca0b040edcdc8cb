"""Push and pull throughput and memory, against the single-core limit of chunk+hash+encrypt.

In one run, on the same bytes (the `files` pair's v1, 1 GiB at full size, read from the page
cache):
- the single-core limit: one thread doing FastCDC + BLAKE3 (convergent key, block id) +
  XChaCha20-Poly1305 over every chunk, and the same with AetherFS's full `seal_block` (which
  also tries zstd);
- `aetherfs push` to an empty store and `aetherfs pull` into an empty directory, on the local
  store and on SeaweedFS: MB/s (10^6 bytes per second of wall time, process start to exit) and
  peak RSS;
- peak RSS of push and pull at a smaller and a larger size (local store), and of the same
  bytes as one file at the two larger sizes: memory must not grow with the data.

    python -m benchmarks.throughput --work benchmarks/.work
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import blake3
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from aetherfs.core.blocks import seal_block
from aetherfs.core.chunking import DEFAULT_PARAMS, chunk_stream
from benchmarks.datasets import MiB, iter_files, make_files_pair, tree_size
from benchmarks.harness import (
    BUCKET,
    aetherfs_cmd,
    base_env,
    commit,
    machine,
    now,
    run,
    s3_server,
    which,
)

MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Measure:
    what: str
    bytes: int
    seconds: float
    max_rss: int | None = None
    rounds: tuple[float, ...] = ()  # MB/s of every round, when repeated

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / MB if self.seconds else 0.0


def median(runs: list[Measure]) -> Measure:
    """The median round by speed, with every round's MB/s and the highest peak RSS."""
    ordered = sorted(runs, key=lambda m: m.mb_per_s)
    middle = ordered[len(ordered) // 2]
    peaks = [m.max_rss for m in runs if m.max_rss]
    return replace(
        middle,
        max_rss=max(peaks) if peaks else None,
        rounds=tuple(round(m.mb_per_s, 1) for m in runs),
    )


def warm(root: Path) -> int:
    """Read every file once so all runs start from the page cache; return the bytes."""
    total = 0
    for f in iter_files(root):
        with f.open("rb") as stream:
            while piece := stream.read(8 * MiB):
                total += len(piece)
    return total


def single_core_limit(root: Path, full_seal: bool) -> Measure:
    """Chunk, hash and encrypt every byte under `root` in this one thread."""
    secret = os.urandom(32)
    total = 0
    result: list[float] = []

    def work() -> None:
        nonlocal total
        started = time.perf_counter()
        for f in iter_files(root):
            with f.open("rb") as stream:
                for chunk in chunk_stream(stream, DEFAULT_PARAMS):
                    total += len(chunk.data)
                    if full_seal:
                        seal_block(chunk.data, secret)
                        continue
                    key = blake3.blake3(chunk.data, key=secret).digest()
                    nonce = blake3.blake3(b"nonce", key=key).digest()[:24]
                    sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(chunk.data, b"", nonce, key)
                    blake3.blake3(sealed).digest()
        result.append(time.perf_counter() - started)

    # A thread of its own, and blake3 left at its default of one thread: one core.
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    what = (
        "seal_block (zstd try + encrypt + hashes), 1 thread"
        if full_seal
        else ("FastCDC + BLAKE3 + XChaCha20-Poly1305, 1 thread")
    )
    return Measure(what, total, result[0])


def push_pull(label: str, src: Path, env: dict[str, str], work: Path) -> list[Measure]:
    size = tree_size(src)
    out = work / f"pull-{label}"
    if out.exists():
        shutil.rmtree(out)
    push = run(aetherfs_cmd("push", src, "bench/throughput:1.0.0", "--json"), env)
    pull = run(aetherfs_cmd("pull", "bench/throughput:1.0.0", out, "--json"), env)
    shutil.rmtree(out)
    return [
        Measure(f"push, {label}", size, push.seconds, push.max_rss),
        Measure(f"pull, {label}", size, pull.seconds, pull.max_rss),
    ]


def store_ceiling(src: Path, endpoint: str, work: Path) -> list[Measure]:
    """rclone copying the same files to and from SeaweedFS: what the server itself sustains."""
    rclone = which("rclone")
    if rclone is None:
        return []
    env = base_env(work / "home-rclone") | {
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
        "RCLONE_CONFIG_BENCH_ENV_AUTH": "true",
    }
    remote = f"bench:{BUCKET}/ceiling-{int(time.time())}"
    out = work / "pull-rclone"
    size = tree_size(src)
    up = run([rclone, "copy", src, remote], env)
    down = run([rclone, "copy", remote, out], env)
    shutil.rmtree(out)
    return [
        Measure("rclone copy up (no chunking, no crypto), SeaweedFS", size, up.seconds, up.max_rss),
        Measure("rclone copy down, SeaweedFS", size, down.seconds, down.max_rss),
    ]


def one_file_tree(source: Path, dest: Path) -> Path:
    """A tree of one file holding `source`'s files end to end."""
    dest.mkdir(parents=True)
    with (dest / "snapshot.bin").open("wb") as out:
        for path in iter_files(source):
            with path.open("rb") as part:
                shutil.copyfileobj(part, out, 8 * MiB)
    return dest


def fresh_env(work: Path, name: str, store: str, endpoint: str | None = None) -> dict[str, str]:
    home = work / f"home-{name}"
    if home.exists():
        shutil.rmtree(home)
    env = base_env(home) | {"AETHERFS_STORE": store}
    if endpoint:
        env["AETHERFS_S3_ENDPOINT"] = endpoint
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--total-mib", type=int, default=1024, help="the large size")
    parser.add_argument("--small-mib", type=int, default=256, help="a smaller size (memory)")
    parser.add_argument("--huge-mib", type=int, default=4096, help="a larger size (memory)")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--s3-endpoint", help="use this S3 server instead of starting SeaweedFS")
    args = parser.parse_args()
    started = time.monotonic()
    work = args.work.absolute() / "throughput"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # The large tree is the `files` pair's v1 (generated once, shared with compare.py).
    from benchmarks.chunk_sweep import ensure_pairs

    large = ensure_pairs(args.work, 2_000_000, args.total_mib, args.files, index=False)
    big = large["files"] / "v1"
    # Same mix of file sizes, fewer files: memory is compared across data size alone.
    small_files = max(4, args.files * args.small_mib // args.total_mib)
    small = make_files_pair(work / "small", total=args.small_mib * MiB, files=small_files).v1

    warm(big)
    rounds: list[list[Measure]] = []
    with s3_server(work, args.s3_endpoint) as endpoint:
        # The machine is shared: repeat each measurement and report the median round.
        for r in range(args.repeat):
            one = [single_core_limit(big, False), single_core_limit(big, True)]
            store = work / f"store-local-{r}"
            one += push_pull("local store", big, fresh_env(work, "local", store.as_uri()), work)
            shutil.rmtree(store)
            prefix = f"s3://{BUCKET}/throughput-{int(time.time())}-{r}"
            one += push_pull("SeaweedFS", big, fresh_env(work, "s3", prefix, endpoint), work)
            one += store_ceiling(big, endpoint, work)
            rounds.append(one)
            print(", ".join(f"{m.what}: {m.mb_per_s:.0f} MB/s" for m in one))
    measures = [median(list(same)) for same in zip(*rounds, strict=True)]
    big_size = tree_size(big)
    warm(small)
    env = fresh_env(work, "small", (work / "store-small").as_uri())
    small_runs = push_pull("local store", small, env, work)
    shutil.rmtree(work / "store-small")
    huge_files = args.files * args.huge_mib // args.total_mib
    huge = make_files_pair(work / "huge", total=args.huge_mib * MiB, files=huge_files).v1
    shutil.rmtree(huge.parent / "v2")
    env = fresh_env(work, "huge", (work / "store-huge").as_uri())
    huge_runs = push_pull("local store", huge, env, work)
    shutil.rmtree(work / "store-huge")
    # The same bytes as one file (a database, a snapshot): one entry with every block.
    one_file: list[tuple[int, list[Measure]]] = []
    for name, source in (("big", big), ("huge", huge)):
        tree = one_file_tree(source, work / f"one-{name}")
        env = fresh_env(work, f"one-{name}", (work / f"store-one-{name}").as_uri())
        one_file.append((tree_size(tree), push_pull("local store", tree, env, work)))
        shutil.rmtree(work / f"store-one-{name}")
        shutil.rmtree(tree)
    for m in measures:
        print(f"{m.what}: {m.mb_per_s:.0f} MB/s, RSS {(m.max_rss or 0) / MiB:.0f} MiB")

    limit = measures[0].mb_per_s
    lines = [
        "# Throughput and memory",
        "",
        f"`python -m benchmarks.throughput` on {now()} ({machine()}).",
        f"Data: {big_size / MiB:,.0f} MiB in {sum(1 for _ in iter_files(big))} files (half "
        "incompressible, half text-like), read from the page cache. MB/s = 10^6 bytes of "
        "dataset per second of wall time (process start to exit, including manifest and tags).",
        "",
        f"Each figure is the median of {args.repeat} rounds (all rounds in brackets).",
        "",
        "| measurement | MB/s (rounds) | of the single-core limit | peak RSS |",
        "|---|---|---|---|",
    ]
    for m in measures:
        rss = f"{m.max_rss / MiB:,.0f} MiB" if m.max_rss else "-"
        every = ", ".join(f"{x:.0f}" for x in m.rounds)
        lines.append(
            f"| {m.what} | {m.mb_per_s:,.0f} ({every}) | {m.mb_per_s / limit:.0%} | {rss} |"
        )
    small_size, huge_size = tree_size(small), tree_size(huge)
    lines += [
        "",
        "Memory at three sizes (local store, one round each at the other sizes; every tree has "
        f"the same mix of file sizes: {small_files}, {args.files} and {huge_files} files):",
        "",
        f"| operation | peak RSS at {small_size / MiB:,.0f} MiB | at {big_size / MiB:,.0f} MiB "
        f"| at {huge_size / MiB:,.0f} MiB | growth per GiB, between the two larger |",
        "|---|---|---|---|---|",
    ]
    for kind in ("push", "pull"):
        a = next(m for m in small_runs if m.what.startswith(kind))
        b = next(m for m in measures if m.what == f"{kind}, local store")
        c = next(m for m in huge_runs if m.what.startswith(kind))
        rss_a, rss_b, rss_c = ((m.max_rss or 0) / MiB for m in (a, b, c))
        slope = (rss_c - rss_b) / ((huge_size - big_size) / 1024**3)
        lines.append(
            f"| {kind} | {rss_a:,.0f} MiB | {rss_b:,.0f} MiB | {rss_c:,.0f} MiB "
            f"| {slope:+,.1f} MiB |"
        )
    (one_a, runs_a), (one_b, runs_b) = one_file
    lines += [
        "",
        "The same bytes as one file (a database or a snapshot: one entry holding every block):",
        "",
        f"| operation | peak RSS at {one_a / MiB:,.0f} MiB | at {one_b / MiB:,.0f} MiB "
        "| growth per GiB |",
        "|---|---|---|---|",
    ]
    for kind in ("push", "pull"):
        a = next(m for m in runs_a if m.what.startswith(kind))
        b = next(m for m in runs_b if m.what.startswith(kind))
        rss_a, rss_b = ((m.max_rss or 0) / MiB for m in (a, b))
        slope = (rss_b - rss_a) / ((one_b - one_a) / 1024**3)
        lines.append(f"| {kind} | {rss_a:,.0f} MiB | {rss_b:,.0f} MiB | {slope:+,.1f} MiB |")
    lines += ["", f"Run time: {time.monotonic() - started:.0f} s."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.md").write_text("\n".join(lines) + "\n")
    report = {
        "date": now(),
        "machine": machine(),
        "commit": commit(),
        "bytes": big_size,
        "measures": [asdict(m) | {"mb_per_s": m.mb_per_s} for m in measures],
        "small": [asdict(m) | {"mb_per_s": m.mb_per_s} for m in small_runs],
        "small_bytes": small_size,
        "huge": [asdict(m) | {"mb_per_s": m.mb_per_s} for m in huge_runs],
        "huge_bytes": huge_size,
        "one_file": [
            {"bytes": size, "runs": [asdict(m) | {"mb_per_s": m.mb_per_s} for m in runs]}
            for size, runs in one_file
        ],
        "seconds": time.monotonic() - started,
    }
    (args.out / "throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
