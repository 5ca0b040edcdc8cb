"""CPU an agent spends to roll out one version with its peers, on loopback.

    python -m benchmarks.agent_cpu [--agents 4] [--mib 64] [--repeat 2] [--rate 100mbit]
        [--before REV | --before-tree DIR] [--profile DIR [--gil]] [--agent-arg=FLAG ...]
        [--work DIR] [--out FILE]

N real `aetherfs agent` processes (the CLI), each listening for peers on its own loopback
address (127.0.0.2, 127.0.0.3, ...) with every other one as a static peer and mDNS off, all
subscribed to one channel of a local-directory store. Each agent dials the others through a
relay process (`--rate`, default 100mbit: every agent's link shaped in and out as one link,
with tbf's 256 KiB burst, as in the namespace LAN of benchmarks/rollout.py; `--rate ''`:
straight loopback), and its store reads are capped at its share of one such link (the store
behind one link; `--no-store-share` to lift it). Once every agent has v0 live and has idled
`--idle` seconds (its idle CPU is reported), the channel moves to v1 (a seeded tree of
`--mib` MiB, half incompressible files, half text-like: benchmarks.datasets) and each agent
is timed until its channel link names v1. CPU seconds of each agent process over the roll
come from /proc/PID/stat (user + system, read before the move and once all are live), and
those of its main thread (the trio loop) from /proc/PID/task/PID/stat; bytes from its status
document: what it received from and sent to peers (the wire, frames included) and what it
read from the store.

Modes alternate run by run so the host's other work falls on all alike: `now` is this tree;
with `--before REV`, `before` is the aetherfs package of git revision REV (exported to a
temporary directory; `--before-tree DIR` names such a directory) running the same agents.
The store is the one both read (published with this tree's CLI). `--profile DIR` records the
first agent of each run with py-spy (`DIR/MODE-RUN.txt`, collapsed stacks; `--gil`: only the
thread holding the GIL). Results: benchmarks/results/agent_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from benchmarks.datasets import MiB, make_files_pair
from benchmarks.harness import BenchmarkError, base_env, which
from benchmarks.peer_throughput import cpu_of, exported
from benchmarks.rollout import aetherfs as cli
from tests.fixtures.ports import free_port

DATASET = "bench/cpu"
CHANNEL = "fleet"
ROOT = Path(__file__).resolve().parent.parent
LIVE_TIMEOUT = 600.0
SHAPER_CHUNK = 16 * 1024  # bytes a relay moves at a time: about what a shaped link delivers
SHAPER_BURST = 256 * 1024  # as tests/fixtures/netns.py's tbf


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    root: Path  # the source tree the agents run


@dataclass(frozen=True, slots=True)
class AgentRun:
    cpu: float  # seconds, over the roll
    trio_cpu: float  # of which its main thread's (the trio loop: transport, protocol, engine)
    seconds: float  # from the channel's move until v1 is live
    peers_in: int  # bytes received from peers (wire)
    peers_out: int  # bytes sent to peers (wire)
    store: int  # stored bytes read from the store


@dataclass(frozen=True, slots=True)
class Run:
    mode: str
    agents: tuple[AgentRun, ...]
    idle: float  # CPU s per second of an agent with v0 live and its peers connected (median)


@dataclass
class Agent:
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def link(self) -> Path:
        return self.root / DATASET / CHANNEL

    def live(self) -> str | None:
        try:
            return os.readlink(self.link).rsplit("/", 1)[-1]
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class Published:
    env: dict[str, str]
    keys: Path
    v0: str
    v1: str
    stored: int


def publish(work: Path, mib: int, seed: int) -> Published:
    data = work / "data" / f"files-{mib}m-s{seed}"
    if not (data / "done").exists():
        make_files_pair(data, total=mib * MiB, files=max(8, mib // 2), seed=seed)
        (data / "done").write_text("")
    v0 = work / "data" / "v0"
    v0.mkdir(parents=True, exist_ok=True)
    (v0 / "hello.txt").write_text("the version every agent starts from\n")
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(work / "writer", ignore_errors=True)
    env = base_env(work / "writer") | {"AETHERFS_STORE": store.as_uri()}
    env.pop("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT)
    first = cli(env, "push", str(v0), f"{DATASET}:0.0.0", "--no-latest")
    second = cli(env, "push", str(data / "v1"), f"{DATASET}:1.0.0", "--no-latest")
    keys = work / "reader.json"
    keys.unlink(missing_ok=True)
    cli(env, "keys", "export", "--reader", str(keys))
    return Published(env, keys, first["manifest"], second["manifest"], int(second["new_bytes"]))


class Bucket:
    """A token bucket: `rate` bytes per second, at most `burst` at once (tbf's shape)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = trio.current_time()

    def debt(self, n: int) -> float:
        """Take `n` bytes; seconds to wait before they may go."""
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - n
        self.at = now
        return max(0.0, -self.tokens / self.rate)


async def _pump(
    source: trio.SocketStream, target: trio.SocketStream, buckets: tuple[Bucket, Bucket]
) -> None:
    try:
        while data := await source.receive_some(SHAPER_CHUNK):
            await trio.sleep(max(b.debt(len(data)) for b in buckets))
            await target.send_all(data)
        await target.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(target)
        await trio.aclose_forcefully(source)


async def _shaper(targets: list[tuple[str, int]], rate: float) -> None:
    """Relays between every ordered pair of agents: agent i dials relay (i, j), which connects
    to agent j; bytes out of an agent and into it share one bucket each (its one link)."""
    out = [Bucket(rate, SHAPER_BURST) for _ in targets]
    into = [Bucket(rate, SHAPER_BURST) for _ in targets]
    ports: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        for i in range(len(targets)):
            for j, (host, port) in enumerate(targets):
                if i == j:
                    continue

                async def relay(
                    stream: trio.SocketStream,
                    i: int = i,
                    j: int = j,
                    host: str = host,
                    port: int = port,
                ) -> None:
                    try:
                        far = await trio.open_tcp_stream(host, port)
                    except OSError:
                        await trio.aclose_forcefully(stream)
                        return
                    async with trio.open_nursery() as pumps:
                        pumps.start_soon(_pump, stream, far, (out[i], into[j]))
                        pumps.start_soon(_pump, far, stream, (out[j], into[i]))

                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                ports[f"{i},{j}"] = listeners[0].socket.getsockname()[1]
                nursery.start_soon(trio.serve_listeners, relay, listeners)
        print(json.dumps(ports), flush=True)


@contextmanager
def shaper(targets: list[str], rate: float) -> Iterator[dict[tuple[int, int], int]]:
    """A relay process (`_shaper`); yields the relay port of each ordered pair."""
    argv = [sys.executable, "-m", "benchmarks.agent_cpu", "--shape", *targets]
    argv += ["--rate", repr(rate)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as relay:
        try:
            assert relay.stdout is not None
            ports = json.loads(relay.stdout.readline())
            yield {tuple(int(x) for x in k.split(",")): v for k, v in ports.items()}  # type: ignore[misc]
        finally:
            relay.terminate()


def start_agents(
    mode: Mode,
    pub: Published,
    base: Path,
    addresses: list[str],
    relays: dict[tuple[int, int], int] | None,
    extra: list[str],
) -> list[Agent]:
    count = len(addresses)
    agents = []
    for i in range(count):
        root = base / f"agent-{i}"
        root.mkdir(parents=True)
        env = pub.env | {"HOME": str(base / f"home-{i}"), "PYTHONPATH": str(mode.root)}
        argv = [
            sys.executable, "-m", "aetherfs.cli.main", "agent",
            "--keys", str(pub.keys), "--data-root", str(root),
            "--subscribe", f"{DATASET}:{CHANNEL}",
            "--poll-interval", "0.5", "--retry-max", "2",
            "--listen-http", "", "--listen-grpc", "",
            "--peer-listen", addresses[i], "--no-mdns",
            *[a for j in range(count) if j != i for a in ("--peer", dial(addresses, relays, i, j))],
            *extra,
        ]  # fmt: skip
        log = base / f"agent-{i}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, env=env, cwd=mode.root, stdout=out, stderr=subprocess.STDOUT
            )
        agents.append(Agent(root, process, log))
    return agents


def rate_bytes(rate: str) -> float:
    """`100mbit`, `12m` (bytes), `500k`... as bytes per second."""
    text = rate.lower()
    bits = text.endswith("bit")
    text = text.removesuffix("bit")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:], 1.0)
    number = float(text.rstrip("kmg"))
    return number * scale / (8 if bits else 1)


def agent_addresses(count: int) -> list[str]:
    return [f"127.0.0.{i + 2}:{free_port()}" for i in range(count)]


def dial(addresses: list[str], relays: dict[tuple[int, int], int] | None, i: int, j: int) -> str:
    """Where agent i dials agent j: straight, or through the shaper's relay."""
    return addresses[j] if relays is None else f"127.0.0.1:{relays[(i, j)]}"


def wait_live(agents: list[Agent], manifest: str, started: float) -> list[float]:
    seconds: dict[int, float] = {}
    deadline = time.monotonic() + LIVE_TIMEOUT
    while len(seconds) < len(agents):
        for i, agent in enumerate(agents):
            if i not in seconds and agent.live() == manifest:
                seconds[i] = time.monotonic() - started
            if agent.process.poll() is not None:
                raise BenchmarkError(f"an agent exited: {agent.log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{manifest[:12]} not live everywhere in {LIVE_TIMEOUT:.0f} s")
        time.sleep(0.02)
    return [seconds[i] for i in range(len(agents))]


def main_thread_cpu(pid: int) -> float:
    """User + system CPU seconds of a process's main thread (where the agent runs trio)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def traded(agent: Agent, pub: Published) -> tuple[int, int, int]:
    """(bytes from peers, bytes to peers, stored bytes from the store) so far, by its status."""
    doc = cli(pub.env, "status", "--data-root", str(agent.root))
    peers = doc.get("peers", [])
    return (
        sum(p["bytes_received"] for p in peers),
        sum(p["bytes_sent"] for p in peers),
        int(doc.get("bytes_by_source", {}).get("store", 0)),
    )


@contextmanager
def profiled(pid: int, out: Path | None, gil: bool = False) -> Iterator[None]:
    if out is None:
        yield
        return
    spy = which("py-spy")
    if spy is None:
        raise BenchmarkError("py-spy is not installed (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "-p", str(pid), "-r", "200", "--format", "raw", "-o", str(out)]
    argv += ["--gil"] if gil else []
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as spy_proc:
        time.sleep(1.0)  # attached
        try:
            yield
        finally:
            spy_proc.send_signal(signal.SIGINT)
            spy_proc.wait(30)


def one_run(mode: Mode, pub: Published, work: Path, args: argparse.Namespace, run: int) -> Run:
    with ExitStack() as stack:
        addresses = agent_addresses(args.agents)
        relays = None
        if args.rate:
            relays = stack.enter_context(shaper(addresses, rate_bytes(args.rate)))
        profile = args.profile / f"{mode.name}-{run}.txt" if args.profile else None
        extra = list(args.agent_arg)
        if args.rate and args.store_share:
            # The store sits behind one such link, shared: each agent gets its share of it.
            extra += ["--store-rate", str(int(rate_bytes(args.rate) / len(addresses)))]
        return rolled(mode, pub, work, addresses, relays, extra, profile, args.idle, args.gil)


def rolled(
    mode: Mode,
    pub: Published,
    work: Path,
    addresses: list[str],
    relays: dict[tuple[int, int], int] | None,
    extra: list[str],
    profile: Path | None,
    idle_seconds: float,
    gil: bool = False,
) -> Run:
    base = Path(tempfile.mkdtemp(prefix=f"{mode.name}-", dir=work))
    cli(pub.env, "tag", f"{DATASET}:0.0.0", CHANNEL)
    agents = start_agents(mode, pub, base, addresses, relays, extra)
    try:
        wait_live(agents, pub.v0, time.monotonic())
        time.sleep(2.0)  # the peers connect and settle
        counted = [traded(a, pub) for a in agents]
        idle = [cpu_of(a.process.pid) for a in agents]
        time.sleep(idle_seconds)
        idle = [
            (cpu_of(a.process.pid) - b) / idle_seconds for a, b in zip(agents, idle, strict=True)
        ]
        with profiled(agents[0].process.pid, profile, gil):
            before = [cpu_of(a.process.pid) for a in agents]
            trio_before = [main_thread_cpu(a.process.pid) for a in agents]
            cli(pub.env, "tag", f"{DATASET}:1.0.0", CHANNEL)
            # CPU is read once all are live: an agent whose version is live idles.
            seconds = wait_live(agents, pub.v1, time.monotonic())
            cpu = [cpu_of(a.process.pid) - b for a, b in zip(agents, before, strict=True)]
            trio_cpu = [
                main_thread_cpu(a.process.pid) - b for a, b in zip(agents, trio_before, strict=True)
            ]
        rows = []
        for agent, took, used, trio_used, earlier in zip(
            agents, seconds, cpu, trio_cpu, counted, strict=True
        ):
            got, sent, store = (b - a for a, b in zip(earlier, traded(agent, pub), strict=True))
            rows.append(AgentRun(used, trio_used, took, got, sent, store))
        return Run(mode.name, tuple(rows), statistics.median(idle))
    finally:
        for agent in agents:
            if agent.process.poll() is None:
                agent.process.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.process.wait(15)
            except subprocess.TimeoutExpired:
                agent.process.kill()
                agent.process.wait()
        shutil.rmtree(base, ignore_errors=True)


def report(args: argparse.Namespace, pub: Published, runs: list[Run], modes: list[Mode]) -> str:
    flags = f" --agents {args.agents} --mib {args.mib} --repeat {args.repeat} --rate '{args.rate}'"
    flags += "".join(f" --agent-arg={a}" for a in args.agent_arg)
    if args.before:
        flags += f" --before {args.before}"
    lines = [
        "# Agent CPU per rollout (agents on loopback, links shaped by a relay, a local store)",
        "",
        f"`python -m benchmarks.agent_cpu{flags}` (Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores shared with other work, load average "
        f"{os.getloadavg()[0]:.1f} at the end); v1 is {pub.stored / MiB:.1f} MiB stored. "
        "CPU s of each agent process over the roll (/proc, user + system); MiB in and out "
        "over the peer wire; per MiB: CPU s per MiB of stored bytes the agent took in (peers "
        "and store).",
        "",
        "| mode | CPU s per agent (median, max) | of which trio thread (median) | last live s "
        "| MiB from peers | MiB to peers | MiB from store | CPU s per MiB taken in "
        "| idle CPU s per s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in modes:
        mine = [a for r in runs if r.mode == mode.name for a in r.agents]
        last = [max(a.seconds for a in r.agents) for r in runs if r.mode == mode.name]
        cpu = [a.cpu for a in mine]
        taken = sum(a.peers_in + a.store for a in mine) / MiB
        lines.append(
            f"| {mode.name} | {statistics.median(cpu):.2f}, {max(cpu):.2f} | "
            f"{statistics.median(a.trio_cpu for a in mine):.2f} | "
            f"{statistics.median(last):.1f} | {statistics.mean(a.peers_in for a in mine) / MiB:.0f}"
            f" | {statistics.mean(a.peers_out for a in mine) / MiB:.0f} | "
            f"{statistics.mean(a.store for a in mine) / MiB:.0f} | {sum(cpu) / taken:.4f} | "
            f"{statistics.median(r.idle for r in runs if r.mode == mode.name):.4f} |"
        )
    lines += [
        "",
        "| run | mode | CPU s per agent | live s per agent | MiB from peers, to peers, store |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for i, run in enumerate(runs, 1):
        cpus = " ".join(f"{a.cpu:.2f}" for a in run.agents)
        secs = " ".join(f"{a.seconds:.1f}" for a in run.agents)
        traffic = " ".join(
            f"{a.peers_in / MiB:.0f}/{a.peers_out / MiB:.0f}/{a.store / MiB:.0f}"
            for a in run.agents
        )
        lines.append(f"| {i} | {run.mode} | {cpus} | {secs} | {traffic} |")
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace, work: Path, before: Path | None) -> str:
    modes = [Mode("now", ROOT)]
    if before is not None:
        modes.insert(0, Mode("before", before))
    pub = publish(work, args.mib, args.seed)
    runs = []
    for i in range(args.repeat):
        for mode in modes:
            runs.append(one_run(mode, pub, work, args, i + 1))
            print(report(args, pub, runs[-1:], [mode]).splitlines()[-1], file=sys.stderr)
    return report(args, pub, runs, modes)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_cpu")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="runs per mode")
    parser.add_argument("--before", help="also run the code at this git revision, alternating")
    parser.add_argument(
        "--before-tree", type=Path, help="or the aetherfs package under this directory"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the first agent of each run here")
    parser.add_argument(
        "--gil", action="store_true", help="profile only the thread holding the GIL (py-spy --gil)"
    )
    parser.add_argument("--work", type=Path, help="keep the data set and store here")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--rate",
        default="100mbit",
        help="each agent's link, in and out, through a relay process ('' = straight loopback)",
    )
    parser.add_argument(
        "--idle", type=float, default=3.0, help="seconds of idle CPU measured before the roll"
    )
    parser.add_argument(
        "--no-store-share",
        dest="store_share",
        action="store_false",
        help="do not cap each agent's store reads at its share of one --rate link",
    )
    parser.add_argument("--agent-arg", action="append", default=[], help="passed to every agent")
    parser.add_argument("--shape", nargs="+", help=argparse.SUPPRESS)  # the relay process
    args = parser.parse_args()
    if args.shape:
        targets = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in args.shape]
        trio.run(_shaper, targets, float(args.rate))
        return
    with ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        before = stack.enter_context(exported(args.before)) if args.before else args.before_tree
        text = measure(args, work, before)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
