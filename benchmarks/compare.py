"""Side by side on each version pair: AetherFS, rsync, fixed-size blocks, casync, rclone, s5cmd.

For each pair (see `benchmarks.datasets`) and each tool, in one run:
- push v2 after v1: bytes uploaded, S3 requests, time, price;
- pull v2 into a directory holding v1: bytes downloaded, S3 requests, time, price;
- the first push and pull of v1, for reference.

AetherFS, rclone and s5cmd run as the real commands against one SeaweedFS, through a counting
proxy (`benchmarks.proxy`) that counts every tool's requests and bytes on the wire the same
way. casync has no S3 client: it chunks v1 and v2 into local chunk stores, and its delta is the
chunks (plus the index) that v2's store holds and v1's lacks, one request per chunk as an HTTP
chunk store would serve them. rsync has no S3 client either: it runs its delta algorithm as it
does over ssh (`-a -z --no-whole-file --ignore-times`, the remote shell a local pipe, so both
ends of the delta code run), and its bytes are what `--stats` counts sent plus received, from
a directory holding v1 to one holding v2 (push) and back (pull). Fixed-size blocks are
computed from the files (same compression and encryption overhead as AetherFS, one object per
block; see `benchmarks.blocks`).

    python -m benchmarks.compare --work benchmarks/.work
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.blocks import Chunker, delta
from benchmarks.chunk_sweep import add_pair_arguments, pairs_from
from benchmarks.datasets import EPOCH, MiB, changed_files, iter_files, stamp_changed, tree_size
from benchmarks.harness import (
    BUCKET,
    aetherfs_cmd,
    base_env,
    commit,
    machine,
    mib,
    now,
    run,
    s3_server,
    which,
)
from benchmarks.pricing import AWS, dollars, split_requests
from benchmarks.proxy import CountingProxy, Traffic
from benchmarks.record_pairs import RECORDS_CHANGED

KiB = 1024


@dataclass(frozen=True, slots=True)
class Op:
    """One transfer: bytes moved (body bytes on the wire), requests by kind, seconds."""

    bytes: int
    requests: dict[str, int]
    seconds: float | None = None

    @classmethod
    def of(cls, traffic: Traffic, seconds: float, upload: bool) -> Op:
        return cls(traffic.up if upload else traffic.down, traffic.requests, seconds)

    def cost(self, upload: bool) -> float:
        puts, gets = split_requests(self.requests)
        return AWS.cost(puts=puts, gets=gets, egress=0 if upload else self.bytes)

    def requests_text(self) -> str:
        puts, gets = split_requests(self.requests)
        return f"{puts + gets:,} ({puts:,} PUT-class)"


@dataclass(slots=True)
class ToolResult:
    tool: str
    push: Op
    pull: Op
    first_push: Op | None = None
    first_pull: Op | None = None
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class Tool:
    """A way to publish a directory to the S3 server and fetch it back."""

    name = ""
    note = ""

    def __init__(self, endpoint: str, pair_name: str, work: Path) -> None:
        self.endpoint = endpoint
        self.pair_name = pair_name
        self.work = work
        self.home = work / f"home-{self.name.lower()}"
        self.env = base_env(self.home)
        self.reports: dict[str, object] = {}

    def push(self, src: Path, version: int) -> float:
        raise NotImplementedError

    def pull(self, version: int, out: Path) -> float:
        raise NotImplementedError

    def before_v2(self, v1: Path, v2: Path) -> None:
        """Hook run between the v1 and v2 rounds."""

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


class AetherFS(Tool):
    name = "AetherFS"
    note = "`aetherfs push` / `aetherfs pull` (CLI, defaults)"

    def __init__(self, endpoint: str, pair_name: str, work: Path) -> None:
        super().__init__(endpoint, pair_name, work)
        self.env |= {
            "AETHERFS_STORE": f"s3://{BUCKET}/aetherfs-{pair_name}",
            "AETHERFS_S3_ENDPOINT": endpoint,
        }
        self.dataset = f"bench/{pair_name.replace('+', '-')}"

    def _run(self, key: str, *args: str | Path) -> float:
        result = run(aetherfs_cmd(*args, "--json"), self.env)
        self.reports[key] = result.json() | {"max_rss": result.max_rss}
        return result.seconds

    def push(self, src: Path, version: int) -> float:
        return self._run(f"push{version}", "push", src, f"{self.dataset}:{version}.0.0")

    def pull(self, version: int, out: Path) -> float:
        return self._run(f"pull{version}", "pull", f"{self.dataset}:{version}.0.0", out)


class Rclone(Tool):
    name = "rclone"
    note = "`rclone sync --checksum` (whole files; copies a file when its MD5 differs)"

    def __init__(self, endpoint: str, pair_name: str, work: Path) -> None:
        super().__init__(endpoint, pair_name, work)
        self.env |= {
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
            "RCLONE_CONFIG_BENCH_ENV_AUTH": "true",
        }
        self.remote = f"bench:{BUCKET}/rclone-{pair_name}"
        self.binary = which("rclone") or "rclone"

    def push(self, src: Path, version: int) -> float:
        return run([self.binary, "sync", "--checksum", src, self.remote], self.env).seconds

    def pull(self, version: int, out: Path) -> float:
        return run([self.binary, "sync", "--checksum", self.remote, out], self.env).seconds


class S5cmd(Tool):
    name = "s5cmd"
    note = "`s5cmd sync` (whole files; copies a file when it is newer or its size differs)"

    def __init__(self, endpoint: str, pair_name: str, work: Path) -> None:
        super().__init__(endpoint, pair_name, work)
        self.url = f"s3://{BUCKET}/s5cmd-{pair_name}/"
        self.binary = which("s5cmd") or "s5cmd"
        self.stamped: tuple[Path, list[str]] | None = None

    def _sync(self, src: str, dst: str) -> float:
        cmd = [self.binary, "--endpoint-url", self.endpoint, "sync", src, dst]
        return run(cmd, self.env).seconds

    def push(self, src: Path, version: int) -> float:
        return self._sync(f"{src}/", self.url)

    def pull(self, version: int, out: Path) -> float:
        out.mkdir(parents=True, exist_ok=True)
        return self._sync(f"{self.url}*", f"{out}/")

    def before_v2(self, v1: Path, v2: Path) -> None:
        # s5cmd decides by modification time: v2's changed files must be newer than the copies
        # of v1 it uploaded, as they would be if a producer wrote them after publishing v1.
        self.stamped = (v2, stamp_changed(v1, v2))
        # S3 keeps modification times to the second: a same-size v2 uploaded within the second
        # of v1 would look no newer to the pull, and s5cmd would keep v1.
        time.sleep(1.1)

    def close(self) -> None:
        super().close()
        if self.stamped:
            root, paths = self.stamped
            for rel in paths:
                os.utime(root / rel, (EPOCH, EPOCH))


def run_tool(tool: Tool, proxy: CountingProxy, pair: Path) -> ToolResult:
    out = tool.work / f"pull-{tool.name.lower()}"
    if out.exists():
        shutil.rmtree(out)

    def measure(action: Callable[[], float], upload: bool) -> Op:
        before = proxy.snapshot()
        seconds = action()
        return Op.of(proxy.snapshot() - before, seconds, upload)

    try:
        first_push = measure(lambda: tool.push(pair / "v1", 1), True)
        first_pull = measure(lambda: tool.pull(1, out), False)
        tool.before_v2(pair / "v1", pair / "v2")
        push = measure(lambda: tool.push(pair / "v2", 2), True)
        pull = measure(lambda: tool.pull(2, out), False)
        if not same_tree(pair / "v2", out):
            raise RuntimeError(f"{tool.name} pulled a tree that differs from v2")
    finally:
        tool.close()
        shutil.rmtree(out, ignore_errors=True)
    return ToolResult(tool.name, push, pull, first_push, first_pull, tool.note, tool.reports)


def same_tree(expected: Path, got: Path) -> bool:
    """Same regular files with the same bytes (tools' own marker files aside)."""
    mine = {f.relative_to(expected).as_posix() for f in iter_files(expected)}
    theirs = {
        f.relative_to(got).as_posix() for f in iter_files(got) if not f.name.startswith(".aetherfs")
    }
    return mine == theirs and not changed_files(got, expected)


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def run_casync(pair: Path, work: Path) -> ToolResult | None:
    binary = which("casync")
    if binary is None:
        return None
    base = _fresh_dir(work / "casync")
    env = base_env(work / "home-casync")
    timings = {}
    for version in ("v1", "v2"):
        store = base / f"{version}.castr"
        timings[version] = run(
            [binary, "make", f"--store={store}", base / f"{version}.caidx", pair / version], env
        ).seconds

    def chunks(store: Path) -> dict[str, int]:
        return {f.name: f.stat().st_size for f in store.rglob("*.cacnk")}

    old, new = chunks(base / "v1.castr"), chunks(base / "v2.castr")
    missing = {n: s for n, s in new.items() if n not in old}
    index = (base / "v2.caidx").stat().st_size
    moved = sum(missing.values()) + index
    # One PUT (push) or GET (pull) per chunk, plus one for the index.
    requests = len(missing) + 1
    push = Op(moved, {"PUT": requests}, timings["v2"])
    pull = Op(moved, {"GET": requests}, None)
    first = sum(old.values()) + (base / "v1.caidx").stat().st_size
    result = ToolResult(
        "casync",
        push,
        pull,
        Op(first, {"PUT": len(old) + 1}, timings["v1"]),
        Op(first, {"GET": len(old) + 1}, None),
        note="`casync make` into local chunk stores (default 16K/64K/256K chunks, zstd); "
        "delta = chunks v2 needs that v1's store lacks, plus the index",
        extra={"v2_chunks": len(new), "new_chunks": len(missing), "index_bytes": index},
    )
    shutil.rmtree(base)
    return result


RSYNC_FLAGS = ("-a", "-z", "--no-whole-file", "--ignore-times", "--stats")


def _rsync_bytes(binary: str, rsh: Path, src: Path, dst: str, env: dict[str, str]) -> Op:
    """One rsync run through the pipe shell: bytes sent plus received, as `--stats` counts."""
    done = run([binary, *RSYNC_FLAGS, "-e", str(rsh), f"{src}/", dst], env)
    counted = {}
    for line in done.stdout.splitlines():
        for key in ("Total bytes sent", "Total bytes received"):
            if line.startswith(key + ":"):
                counted[key] = int(line.split(":", 1)[1].strip().replace(",", ""))
    if len(counted) != 2:
        raise RuntimeError(f"rsync --stats printed no byte counts: {done.stdout[-500:]}")
    return Op(sum(counted.values()), {}, done.seconds)


def run_rsync(pair: Path, work: Path) -> ToolResult | None:
    binary = which("rsync")
    if binary is None:
        return None
    base = _fresh_dir(work / "rsync")
    # rsync calls `RSH HOST rsync --server ...`: dropping the host runs the far end locally,
    # over a pipe, as ssh would run it on the other host.
    rsh = base / "pipe-rsh"
    rsh.write_text('#!/bin/sh\nshift\nexec "$@"\n')
    rsh.chmod(0o755)
    env = base_env(work / "home-rsync")
    remote, local = base / "remote", base / "local"
    first_push = _rsync_bytes(binary, rsh, pair / "v1", f"localhost:{remote}", env)
    first_pull = _rsync_bytes(binary, rsh, remote, str(local), env)
    push = _rsync_bytes(binary, rsh, pair / "v2", f"localhost:{remote}", env)
    pull = _rsync_bytes(binary, rsh, remote, str(local), env)
    if not same_tree(pair / "v2", local):
        raise RuntimeError("rsync pulled a tree that differs from v2")
    shutil.rmtree(base)
    return ToolResult(
        "rsync",
        push,
        pull,
        first_push,
        first_pull,
        note="`rsync -a -z --no-whole-file --ignore-times` through a pipe as its remote shell "
        "(the delta algorithm runs at both ends); bytes = sent + received (`--stats`); "
        "host to host, no store",
    )


def run_fixed(pair: Path, size: int) -> ToolResult:
    started = time.monotonic()
    d = delta(pair / "v1", pair / "v2", Chunker.fixed_size(size))
    seconds = time.monotonic() - started
    return ToolResult(
        f"fixed {size // KiB} KiB blocks" if size < MiB else f"fixed {size // MiB} MiB blocks",
        # Like AetherFS, a version needs a manifest listing its blocks: count it (estimated).
        Op(d.new_stored_bytes + d.manifest_bytes, {"PUT": d.push_puts_single + 1}),
        Op(d.new_stored_bytes + d.manifest_bytes, {"GET": d.pull_gets_single + 1}),
        Op(d.fresh_bytes_single + d.manifest_bytes, {"PUT": d.v2_unique_blocks + 1}),
        Op(d.fresh_bytes_single + d.manifest_bytes, {"GET": d.fresh_gets_single + 1}),
        note="computed from the files: same compression and encryption, one object per block, "
        "plus a manifest of 152 bytes per block",
        extra={"seconds_to_compute": seconds, "new_blocks": d.new_blocks},
    )


def _t(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def table(results: list[ToolResult]) -> str:
    ours = next((r for r in results if r.tool == "AetherFS"), None)
    lines = [
        "| tool | push v2: bytes up | requests | time | $ | pull v2 over v1: bytes down "
        "| requests | time | $ | bytes moved vs AetherFS (push / pull) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "-"
        if ours and r is not ours:
            ratio = (
                f"{r.push.bytes / max(1, ours.push.bytes):.1f}x / "
                f"{r.pull.bytes / max(1, ours.pull.bytes):.1f}x"
            )
        lines.append(
            f"| {r.tool} | {mib(r.push.bytes)} | {r.push.requests_text()} | {_t(r.push.seconds)} "
            f"| {dollars(r.push.cost(True))} | {mib(r.pull.bytes)} | {r.pull.requests_text()} "
            f"| {_t(r.pull.seconds)} | {dollars(r.pull.cost(False))} | {ratio} |"
        )
    lines += [
        "",
        "First version, for reference (push v1 to an empty store, pull v1 into an empty "
        "directory):",
        "",
        "| tool | push v1: bytes up | requests | time | pull v1: bytes down | requests | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.first_push and r.first_pull:
            lines.append(
                f"| {r.tool} | {mib(r.first_push.bytes)} | {r.first_push.requests_text()} "
                f"| {_t(r.first_push.seconds)} | {mib(r.first_pull.bytes)} "
                f"| {r.first_pull.requests_text()} | {_t(r.first_pull.seconds)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_pair_arguments(parser)
    parser.add_argument("--s3-endpoint", help="use this S3 server instead of starting SeaweedFS")
    parser.add_argument(
        "--tools",
        default="aetherfs,rsync,fixed,casync,rclone,s5cmd",
        help="comma-separated subset of aetherfs,rsync,fixed,casync,rclone,s5cmd",
    )
    args = parser.parse_args()
    wanted = set(args.tools.split(","))
    started = time.monotonic()
    pairs = pairs_from(args, index=False)
    report: dict[str, object] = {
        "date": now(),
        "machine": machine(),
        "commit": commit(),
        "pairs": {},
    }
    lines = [
        "# Side by side: AetherFS, fixed-size blocks, casync, rclone, s5cmd",
        "",
        f"`python -m benchmarks.compare` on {report['date']} ({report['machine']}).",
        "Bytes and requests of AetherFS, rclone and s5cmd are counted on the wire by a proxy "
        "in front of SeaweedFS (body bytes; PUT-class = PUT, POST, LIST, COPY). Prices: AWS S3 "
        "list (PUT $0.005/1000, GET $0.0004/1000, egress $0.09/GB; uploads are free). casync "
        "and fixed-size blocks are computed (no S3 client): one request per chunk.",
        "",
    ]
    work = args.work.absolute() / "compare"
    work.mkdir(parents=True, exist_ok=True)
    with s3_server(work, args.s3_endpoint) as endpoint, CountingProxy(endpoint) as proxy:
        for name, pair in pairs.items():
            results: list[ToolResult] = []
            tools: list[type[Tool]] = []
            if "aetherfs" in wanted:
                tools.append(AetherFS)
            whole_file: list[type[Tool]] = [Rclone, S5cmd]
            for candidate in whole_file:
                if candidate.name.lower() in wanted:
                    if which(candidate.name.lower()):
                        tools.append(candidate)
                    else:
                        print(f"{candidate.name} is missing: skipped (run_all.sh installs it)")
            for tool_class in tools:
                t = time.monotonic()
                results.append(run_tool(tool_class(proxy.endpoint, name, work), proxy, pair))
                print(f"{name}: {tool_class.name} done in {time.monotonic() - t:.0f} s")
            if "rsync" in wanted:
                rsync = run_rsync(pair, work)
                if rsync is None:
                    print("rsync is not installed: skipped (benchmarks/run_all.sh installs it)")
                else:
                    results.insert(1, rsync)
            if "casync" in wanted:
                casync = run_casync(pair, work)
                if casync is None:
                    print("casync is not installed: skipped (benchmarks/run_all.sh installs it)")
                else:
                    results.insert(1, casync)
            if "fixed" in wanted:
                for size in (1 * MiB, 64 * KiB):
                    results.insert(1, run_fixed(pair, size))
            report["pairs"][name] = {  # type: ignore[index]
                "v1_bytes": tree_size(pair / "v1"),
                "v2_bytes": tree_size(pair / "v2"),
                "whole_file_bytes": sum(
                    (pair / "v2" / rel).stat().st_size
                    for rel in changed_files(pair / "v1", pair / "v2")
                ),
                "records_changed": RECORDS_CHANGED.get(name, 1.0),
                "results": [asdict(r) for r in results],
            }
            lines += [
                f"## {name}: v1 {mib(tree_size(pair / 'v1'))}, v2 {mib(tree_size(pair / 'v2'))}",
                "",
                table(results),
            ]
            for r in results:
                lines.append(f"- {r.tool}: {r.note}")
            lines.append("")
    lines.append(f"Run time: {time.monotonic() - started:.0f} s.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    report["seconds"] = time.monotonic() - started
    (args.out / "compare.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
