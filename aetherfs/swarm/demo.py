"""Two agents' engines in two processes trading one synthetic version over loopback TCP:
the cross-process test and `benchmarks/peer_throughput.py` run this.

    python -m aetherfs.swarm.demo serve --version v1 --mib 64
        prints {"port": P} and serves the version from memory until killed (or --seconds)
    python -m aetherfs.swarm.demo fetch --version v1 --mib 64 --peer 127.0.0.1:P [--open]
        fetches it from its peers only (no store), each block opened with `open_block`
        when --open (and let go once opened when --discard), and prints
        {"seconds": ..., "bytes": ..., ...}

Both sides build the same version from `--version` (real sealed blocks, in memory) and
derive the fleet secret from `--fleet`; nothing here is for production use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import blake3
import trio
from nacl.signing import SigningKey

from aetherfs.core.blocks import open_block
from aetherfs.errors import AetherError
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import FetchPlanner, PeerId, PieceTable, UploadScheduler
from aetherfs.protocol.admission import FleetSecret
from aetherfs.protocol.connection import PeerConfig
from aetherfs.swarm.engine import EngineConfig, SwarmEngine
from aetherfs.swarm.interfaces import StoredBlocks
from aetherfs.swarm.memory import MemoryBlocks, NoStore, SyntheticVersion, synthetic_version

KiB = 1024
MiB = 1024 * KiB


class OpeningSink(MemoryBlocks):
    """Keeps every block and first opens it (decrypt, check the plaintext): the agent's cost
    for a block from a peer, whose id the protocol has already checked. `keep=False` lets
    each piece go once opened, as an agent does once it has written it out: the process
    then holds the pieces in flight, not the version (fresh memory for a whole version costs
    a page fault per 4 KiB, which is not the peer path's cost)."""

    def __init__(self, version: SyntheticVersion, check: bool, keep: bool = True) -> None:
        super().__init__()
        self.refs = {ref.id: ref for ref in version.refs}
        self.check = check
        self.keep = keep
        self.opened = 0
        self.received = 0

    def __call__(self, table: PieceTable, index: int, blocks: StoredBlocks) -> None:
        if self.check:
            for block_id, stored in blocks:
                open_block(self.refs[block_id], stored, verified=True)
            self.opened += len(blocks)
        self.received += len(blocks)
        if self.keep:
            super().__call__(table, index, blocks)


def run_queue_wait(pid: int | str = "self") -> float:
    """Seconds the process's threads were runnable but waiting for a core (Linux
    schedstat; 0 elsewhere): on a shared host, what wall time the CPU did not explain."""
    total = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def build(args: argparse.Namespace) -> SyntheticVersion:
    block = args.block_kib * KiB
    per_piece = max(1, 4 * MiB // block)
    pieces = max(1, args.mib * MiB // (block * per_piece))
    return synthetic_version(args.version, pieces, per_piece, block, pack_pieces=4)


def engine_for(
    args: argparse.Namespace, version: SyntheticVersion, blocks: MemoryBlocks
) -> SwarmEngine:
    identity = SigningKey.generate()
    fleet = FleetSecret(blake3.blake3(args.fleet.encode()).digest())
    now = trio.current_time()
    return SwarmEngine(
        EngineConfig(
            listen_port=args.port, static_peers=tuple(PeerAddress.parse(p) for p in args.peer)
        ),
        PeerConfig(identity, fleet, agent=f"demo-{args.command}"),
        [version.access],
        FetchPlanner(PeerId(bytes(identity.verify_key)), now=now),
        UploadScheduler(now=now),
        blocks,
        NoStore(),
        blocks,
    )


async def serve(args: argparse.Namespace) -> None:
    version = build(args)
    blocks = MemoryBlocks(version.stored)
    engine = engine_for(args, version, blocks)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        await engine.offer(version.table, version.access.access_id)
        print(json.dumps({"port": engine.port}), flush=True)
        await trio.sleep(args.seconds)
        nursery.cancel_scope.cancel()


async def fetch(args: argparse.Namespace) -> None:
    version = build(args)
    sink = OpeningSink(version, args.open, keep=not args.discard)
    engine = engine_for(args, version, sink)
    dataset = version.access.access_id
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        with trio.fail_after(args.seconds):
            while not engine.announced(version.table.id):
                await trio.sleep(0.01)  # fetch once a peer has said what it holds
            started, cpu, waited = time.perf_counter(), time.process_time(), run_queue_wait()
            reader = time.thread_time()  # this (trio) thread: sockets, protocol, engine
            counters = await engine.fetch(version.table, dataset)
            took, cpu_took = time.perf_counter() - started, time.process_time() - cpu
            reader = time.thread_time() - reader
            waited = run_queue_wait() - waited
        status = engine.status()
        print(
            json.dumps(
                {
                    "seconds": took,
                    "cpu_seconds": cpu_took,
                    "reader_cpu_seconds": reader,
                    "run_queue_seconds": waited,
                    "bytes": version.table.total_size,
                    "bytes_from_peers": counters.bytes_from_peers,
                    "store_reads": counters.store_reads,
                    "blocks": sink.received,
                    "opened": sink.opened,
                    "peers": [p.agent for p in status.peers],
                }
            ),
            flush=True,
        )
        nursery.cancel_scope.cancel()


@contextmanager
def serving(options: Sequence[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A `serve` process (the tests' and the benchmark's), and the port it listens on."""
    command = [sys.executable, "-m", "aetherfs.swarm.demo", "serve", *options]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            yield server, int(json.loads(server.stdout.readline())["port"])
        finally:
            server.terminate()


def run_fetch(options: Sequence[str], port: int) -> subprocess.CompletedProcess[str]:
    """A `fetch` process against a `serving` one, to its end."""
    command = [sys.executable, "-m", "aetherfs.swarm.demo", "fetch", *options]
    return subprocess.run(
        [*command, "--peer", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=300
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m aetherfs.swarm.demo")
    parser.add_argument("command", choices=("serve", "fetch"))
    parser.add_argument("--version", default="demo", help="the synthetic version's name")
    parser.add_argument("--mib", type=int, default=16, help="its size")
    parser.add_argument("--block-kib", type=int, default=64)
    parser.add_argument("--fleet", default="demo fleet", help="text the fleet secret is made of")
    parser.add_argument("--port", type=int, default=0, help="listen port (0: any)")
    parser.add_argument("--peer", action="append", default=[], help="host:port to dial")
    parser.add_argument("--open", action="store_true", help="open every block fetched")
    parser.add_argument(
        "--discard", action="store_true", help="let each piece go once sunk (and opened)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="give up (or stop) after")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    code = 0
    try:
        trio.run(serve if args.command == "serve" else fetch, args)
    except* AetherError as group:
        error = _leaf(group)
        print(f"error: {error}", file=sys.stderr)
        code = error.exit_code if isinstance(error, AetherError) else 1
    except* trio.TooSlowError:
        print(f"error: no peer served the version within {args.seconds:g} s", file=sys.stderr)
        code = 1
    return code


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    sys.exit(main())
