"""Peer-to-peer throughput over loopback TCP between two processes, next to the single-core
decrypt-and-verify limit measured in the same run.

- limit: `core.blocks.open_block` over the version's stored blocks in this process, CPU time,
  best of 3 (`--repeat`): what an agent must do with every block it receives anyway.
- peers: `python -m aetherfs.swarm.demo serve` holds the version in memory; `... fetch --open`
  fetches it from that peer only (the real engine, planner, protocol and trio transport) and
  opens every block with `open_block` (the id already checked by the protocol). Wall time
  from the first request to the last piece kept, best of 3, and the CPU both processes used
  meanwhile (the receiver's from `process_time`, its trio thread's from `thread_time`, the
  sender's from /proc), since the host's two cores are shared.
- modes, alternated run by run so the host's other work falls on all alike: the fetcher
  keeps every block (`kept`, the demo's default) or lets each piece go once opened
  (`let go`, as an agent that has written it out); with `--before REV`, the same `kept`
  runs of the code at git revision REV (exported to a temporary directory), side by side.

Run: `python -m benchmarks.peer_throughput [--mib 64] [--block-kib 64 256] [--before REV]
[--repeat 3] [--write]`; writes benchmarks/results/peer_throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aetherfs.core.blocks import open_block
from aetherfs.swarm.demo import KiB, MiB, run_queue_wait
from aetherfs.swarm.memory import synthetic_version

RESULTS = Path(__file__).parent / "results" / "peer_throughput.md"
ROOT = Path(__file__).resolve().parent.parent
REPEAT = 3


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    root: Path  # the source tree the two processes run
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Run:
    mode: str
    bytes: int
    seconds: float
    receiver_cpu: float
    reader_cpu: float | None  # the receiver's trio thread (None: code that does not say)
    sender_cpu: float
    receiver_waited: float  # runnable, waiting for a core (the host is shared)
    sender_waited: float

    @property
    def wall_rate(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def receiver_rate(self) -> float:
        return self.bytes / self.receiver_cpu / 1e6


def limit(mib: int, block_kib: int, repeat: int) -> float:
    """Stored MB per CPU second through open_block, best of REPEAT."""
    block = block_kib * KiB
    per_piece = max(1, 4 * MiB // block)
    version = synthetic_version("bench", max(1, mib * MiB // (block * per_piece)), per_piece, block)
    stored = version.stored
    best = 0.0
    for _ in range(repeat):
        started = time.process_time()
        for ref in version.refs:
            open_block(ref, stored[ref.id])
        took = time.process_time() - started
        best = max(best, sum(len(b) for b in stored.values()) / took / 1e6)
    return best


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def exported(revision: str) -> Iterator[Path]:
    """The aetherfs package of a git revision, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="aetherfs-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "aetherfs"],
            capture_output=True,
            check=True,
        ).stdout
        archive_path = Path(tmp) / "src.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def demo(mode: Mode, args: list[str], **kw: object) -> subprocess.Popen[str]:
    """A demo process of that mode's code (run from its root, so `-m` imports it)."""
    env = dict(os.environ, PYTHONPATH=str(mode.root))
    command = [sys.executable, "-m", "aetherfs.swarm.demo", *args]
    return subprocess.Popen(command, cwd=mode.root, env=env, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def one_run(mode: Mode, mib: int, block_kib: int) -> Run:
    common = ["--version", "bench", "--mib", str(mib), "--block-kib", str(block_kib)]
    with demo(mode, ["serve", *common, "--seconds", "300"], stdout=subprocess.PIPE) as server:
        try:
            assert server.stdout is not None
            port = int(json.loads(server.stdout.readline())["port"])
            before, waited = cpu_of(server.pid), run_queue_wait(server.pid)
            fetch = ["fetch", *common, "--open", *mode.flags, "--peer", f"127.0.0.1:{port}"]
            with demo(mode, fetch, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as fetcher:
                out, err = fetcher.communicate(timeout=300)
            sender_cpu = cpu_of(server.pid) - before
            sender_waited = run_queue_wait(server.pid) - waited
        finally:
            server.terminate()
    if fetcher.returncode:
        raise SystemExit(f"the fetch failed: {err}")
    result = json.loads(out)
    if result["opened"] != result["blocks"] or result["bytes_from_peers"] != result["bytes"]:
        raise SystemExit(f"the fetch did not get every block from the peer: {result}")
    return Run(
        mode.name,
        result["bytes"],
        result["seconds"],
        result["cpu_seconds"],
        result.get("reader_cpu_seconds"),
        sender_cpu,
        result["run_queue_seconds"],
        sender_waited,
    )


def header(mib: int, sizes: list[int], before: str | None, repeat: int) -> list[str]:
    kib = " ".join(str(k) for k in sizes)
    flag = (f" --before {before}" if before else "") + (
        f" --repeat {repeat}" if repeat != REPEAT else ""
    )
    return [
        "# Peer-to-peer throughput (two processes, loopback TCP)",
        "",
        f"`python -m benchmarks.peer_throughput --mib {mib} --block-kib {kib}{flag} --write` "
        f"on this host (Python {platform.python_version()}, {os.cpu_count()} cores shared "
        f"with other work, load average {os.getloadavg()[0]:.1f} at the start); random "
        "(incompressible) blocks, MB/s of stored block bytes (10^6 bytes/s). The receiver "
        "opens every block (`open_block`, the id already checked by the protocol). Modes "
        "alternate run by run; per mode the best of "
        f"{repeat}: wall clock, and the least CPU. *kept*: the fetcher keeps the version in "
        "memory (the demo's default); *let go*: each piece is let go once opened, as an agent "
        "does once it has written it out."
        + (f" *before*: the code at `{before}`, blocks kept." if before else ""),
    ]


def report(block_kib: int, core: float, runs: list[Run], modes: list[Mode]) -> list[str]:
    lines = [
        "",
        f"## {block_kib} KiB blocks",
        "",
        f"Limit: `open_block` on one core, **{core:,.0f} MB/s** of CPU time.",
        "",
        "| mode | wall MB/s | of the limit | receiver CPU s | its trio thread CPU s | "
        "MB/s per receiver CPU s | of the limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in modes:
        mine = [r for r in runs if r.mode == mode.name]
        wall = max(r.wall_rate for r in mine)
        cpu = min(r.receiver_cpu for r in mine)
        readers = [r.reader_cpu for r in mine if r.reader_cpu is not None]
        reader = f"{min(readers):.3f}" if readers else "n/a"
        per_cpu = mine[0].bytes / cpu / 1e6
        lines.append(
            f"| {mode.name} | {wall:,.0f} | {wall / core:.0%} | {cpu:.3f} | {reader} | "
            f"{per_cpu:,.0f} | {per_cpu / core:.0%} |"
        )
    lines += [
        "",
        "(queued): seconds its threads were runnable but waiting for a core, summed over threads "
        "(`/proc/PID/task/*/schedstat`): the share of the wall time the host's other work took.",
        "",
        "| run | mode | MB | wall s | MB/s | receiver CPU s (queued) | trio thread CPU s | "
        "sender CPU s (queued) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, run in enumerate(runs, 1):
        reader = "n/a" if run.reader_cpu is None else f"{run.reader_cpu:.3f}"
        lines.append(
            f"| {i} | {run.mode} | {run.bytes / 1e6:,.1f} | {run.seconds:.2f} | "
            f"{run.wall_rate:,.0f} | {run.receiver_cpu:.3f} ({run.receiver_waited:.2f}) | "
            f"{reader} | {run.sender_cpu:.3f} ({run.sender_waited:.2f}) |"
        )
    return lines


def measure(args: argparse.Namespace, before: Path | None) -> list[str]:
    modes = [Mode("kept", ROOT, ()), Mode("let go", ROOT, ("--discard",))]
    if before is not None:
        modes.insert(0, Mode("before", before, ()))
    lines = header(args.mib, args.block_kib, args.before, args.repeat)
    for block_kib in args.block_kib:
        core = limit(args.mib, block_kib, args.repeat)
        runs = [one_run(mode, args.mib, block_kib) for _ in range(args.repeat) for mode in modes]
        lines += report(block_kib, core, runs, modes)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_throughput")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--block-kib", type=int, nargs="+", default=[64])
    parser.add_argument("--before", help="also run the code at this git revision, alternating")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="runs per mode")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    if args.before:
        with exported(args.before) as before:
            lines = measure(args, before)
    else:
        lines = measure(args, None)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
