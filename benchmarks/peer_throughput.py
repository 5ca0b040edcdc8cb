"""Peer-to-peer throughput over loopback TCP between two processes, next to the single-core
decrypt-and-verify limit measured in the same run.

- limit: `core.blocks.open_block` over the version's stored blocks in this process, CPU time,
  best of 3: what an agent must do with every block it receives anyway.
- peers: `python -m aetherfs.swarm.demo serve` holds the version in memory; `... fetch --open`
  fetches it from that peer only (the real engine, planner, protocol and trio transport) and
  opens every block with `open_block` before keeping it. Wall time from the first request to
  the last piece kept, best of 3, and the CPU both processes used meanwhile (the receiver's
  from `process_time`, the sender's from /proc), since the host's two cores are shared.

Run: `python -m benchmarks.peer_throughput [--mib 64] [--block-kib 64] [--write]`; writes
benchmarks/results/peer_throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from aetherfs.core.blocks import open_block
from aetherfs.swarm.demo import KiB, MiB, run_fetch, run_queue_wait, serving
from aetherfs.swarm.memory import synthetic_version

RESULTS = Path(__file__).parent / "results" / "peer_throughput.md"
REPEAT = 3


@dataclass(frozen=True, slots=True)
class Run:
    bytes: int
    seconds: float
    receiver_cpu: float
    sender_cpu: float
    receiver_waited: float  # runnable, waiting for a core (the host is shared)
    sender_waited: float

    @property
    def wall_rate(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def receiver_rate(self) -> float:
        return self.bytes / self.receiver_cpu / 1e6


def limit(mib: int, block_kib: int) -> float:
    """Stored MB per CPU second through open_block, best of REPEAT."""
    block = block_kib * KiB
    per_piece = max(1, 4 * MiB // block)
    version = synthetic_version("bench", max(1, mib * MiB // (block * per_piece)), per_piece, block)
    stored = version.stored
    best = 0.0
    for _ in range(REPEAT):
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


def one_run(mib: int, block_kib: int) -> Run:
    common = ["--version", "bench", "--mib", str(mib), "--block-kib", str(block_kib)]
    with serving([*common, "--seconds", "300"]) as (server, port):
        before, waited = cpu_of(server.pid), run_queue_wait(server.pid)
        fetched = run_fetch([*common, "--open"], port)
        sender_cpu = cpu_of(server.pid) - before
        sender_waited = run_queue_wait(server.pid) - waited
    if fetched.returncode:
        raise SystemExit(f"the fetch failed: {fetched.stderr}")
    result = json.loads(fetched.stdout)
    if result["opened"] != result["blocks"] or result["bytes_from_peers"] != result["bytes"]:
        raise SystemExit(f"the fetch did not get every block from the peer: {result}")
    return Run(
        result["bytes"],
        result["seconds"],
        result["cpu_seconds"],
        sender_cpu,
        result["run_queue_seconds"],
        sender_waited,
    )


def header(mib: int, sizes: list[int]) -> list[str]:
    kib = " ".join(str(k) for k in sizes)
    return [
        "# Peer-to-peer throughput (two processes, loopback TCP)",
        "",
        f"`python -m benchmarks.peer_throughput --mib {mib} --block-kib {kib} --write` on this "
        f"host (Python {platform.python_version()}, {os.cpu_count()} cores shared with other "
        f"work, load average {os.getloadavg()[0]:.1f} at the start); random (incompressible) "
        f"blocks, MB/s of stored block bytes (10^6 bytes/s), best of {REPEAT}. The receiver "
        "opens every block (`open_block`, the id already checked by the protocol).",
    ]


def report(block_kib: int, core: float, runs: list[Run]) -> list[str]:
    best = max(runs, key=lambda r: r.wall_rate)
    per_cpu = max(r.receiver_rate for r in runs)
    lines = [
        "",
        f"## {block_kib} KiB blocks",
        "",
        "| what | MB/s |",
        "| --- | ---: |",
        f"| limit: open_block on one core (CPU time) | {core:,.0f} |",
        f"| peer to peer, wall clock | {best.wall_rate:,.0f} |",
        f"| peer to peer, per CPU second of the receiver | {per_cpu:,.0f} |",
        "",
        "(queued): seconds its threads were runnable but waiting for a core, summed over threads "
        "(`/proc/PID/task/*/schedstat`): the share of the wall time the host's other work took.",
        "",
        "| run | MB | wall s | MB/s | receiver CPU s (queued) | sender CPU s (queued) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, run in enumerate(runs, 1):
        lines.append(
            f"| {i} | {run.bytes / 1e6:,.1f} | {run.seconds:.2f} | {run.wall_rate:,.0f} | "
            f"{run.receiver_cpu:.2f} ({run.receiver_waited:.2f}) | "
            f"{run.sender_cpu:.2f} ({run.sender_waited:.2f}) |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_throughput")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--block-kib", type=int, nargs="+", default=[64])
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    lines = header(args.mib, args.block_kib)
    for block_kib in args.block_kib:
        core = limit(args.mib, block_kib)
        runs = [one_run(args.mib, block_kib) for _ in range(REPEAT)]
        lines += report(block_kib, core, runs)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
