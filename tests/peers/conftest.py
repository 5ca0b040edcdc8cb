"""Agents in network namespaces on one bridge, SeaweedFS in another: a fleet for the peer tests.

One LAN and one SeaweedFS for the whole session (building them costs seconds), each module its
own store prefix and fleet; every agent is the real CLI (`aetherfs agent`) in its own namespace,
asked over its Unix socket from here. The store's egress is counted twice: by the bytes its
namespace's interface sent (`Lan.tx_bytes("store")`), and by each agent's engine
(`fetches[].store_reads` in status).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli
from tests.fixtures.netns import Lan, build_lan, run_seaweedfs_in
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS

PEER_PORT = 7422
HOSTS = ["a0", "a1", "a2", "a3", "a4"]
# x: an agent of another fleet; h: a peer sending corrupt blocks; the hub, its agents and
# peers presenting a revoked and an expired certificate (test_certificates.py).
OTHERS = ["x", "h", "hub", "c0", "c1", "c2", "r", "e"]
DATASET = "team/geo"
STABLE = f"{DATASET}:stable"


@dataclass(frozen=True)
class StoreLan:
    lan: Lan
    s3: SeaweedFS


@dataclass
class LanAgent:
    """`aetherfs agent` inside one namespace."""

    lan: Lan
    host: str
    data_root: Path
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return self.lan[self.host].address

    def start(self, wait: bool = True) -> LanAgent:
        """Start the agent; with `wait`, until its peer exchange is up (or says why not)."""
        log = self.log_path.open("ab")
        argv = [
            sys.executable, "-m", "aetherfs.cli.main", "agent",
            "--data-root", str(self.data_root),
            "--peer-listen", f"{self.address}:{PEER_PORT}",
            "--poll-interval", "0.2", "--retry-max", "1",
            *self.args,
        ]  # fmt: skip
        self.proc = self.lan.start(
            self.host, argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_started()
        return self

    def wait_started(self) -> None:
        self.wait_for(
            lambda s: s["peer_exchange"]["enabled"] or s["peer_exchange"]["problem"], "peers"
        )

    def peer_row(self, agent: str) -> dict[str, Any] | None:
        """This agent's status row of the peer that calls itself `agent`."""
        return next((p for p in self.status()["peers"] if p["agent"] == agent), None)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def status(self) -> dict[str, Any]:
        transport = httpx.HTTPTransport(uds=str(self.data_root / ".agent" / "agent.sock"))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as client:
            response = client.get("/v1/status")
            response.raise_for_status()
            doc: dict[str, Any] = response.json()
            return doc

    def wait_for(
        self, check: Callable[[dict[str, Any]], object], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        snap: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.host} exited {self.proc.returncode}: {self.log()}")
            try:
                snap = self.status()
            except (httpx.HTTPError, OSError):
                time.sleep(0.1)
                continue
            if check(snap):
                return snap
            time.sleep(0.1)
        raise AssertionError(
            f"{self.host}: timed out waiting for {what}: {json.dumps(snap)[:3000]}"
        )

    def open_peers(self) -> int:
        return sum(p["state"] == "open" for p in self.status()["peers"])

    def live(self, ref: str) -> str | None:
        for ch in self.status()["subscriptions"]:
            if ch["subscription"] == ref and ch["live"]:
                return str(ch["live"]["manifest"])
        return None

    def fetch(self, manifest: str) -> dict[str, Any] | None:
        for f in self.status()["fetches"]:
            if f["manifest"] == manifest:
                return dict(f)
        return None


@dataclass
class Fleet:
    lan: Lan
    cli: Cli  # the producer, in the root namespace
    store_url: str
    keys: Path
    root: Path
    agents: dict[str, LanAgent] = field(default_factory=dict)

    def agent(self, host: str, *args: str, cli: Cli | None = None) -> LanAgent:
        """An agent in `host` reading the fleet's store with its reader keyring (`cli`: one
        of another environment, whose own args then say where it reads)."""
        env = dict((cli or self.cli).env)
        store = [] if cli else ["--store", self.store_url, "--keys", str(self.keys)]
        agent = LanAgent(
            self.lan,
            host,
            self.root / f"{host}-root",
            [*store, *args],
            env,
            self.root / f"{host}.log",
        )
        self.agents[host] = agent
        return agent

    def push(self, src: Path, ref: str, *tags: str) -> str:
        args = ["push", str(src), ref, "--json"]
        for tag in tags:
            args += ["--tag", tag]
        manifest: str = json.loads(self.cli(*args).out)["manifest"]
        return manifest

    def store_sent(self) -> int:
        """Bytes the store's namespace has sent so far (every reply SeaweedFS made)."""
        return self.lan.tx_bytes("store")


def producer_cli(home: Path, store_url: str, endpoint: str | None = None) -> Cli:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent.parent),
        "AETHERFS_STORE": store_url,
    }
    if endpoint is not None:
        env.update(CREDENTIALS, AETHERFS_S3_ENDPOINT=endpoint, AWS_REGION="us-east-1")
    return Cli(env, home)


@pytest.fixture(scope="session")
def store_lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreLan]:
    """The LAN (every host any module uses) and SeaweedFS in its store namespace."""
    data = tmp_path_factory.mktemp("seaweedfs")
    with build_lan([*HOSTS, *OTHERS], store=True) as lan, run_seaweedfs_in(lan, data) as s3:
        yield StoreLan(lan, s3)


def new_fleet(store_lan: StoreLan, root: Path) -> Fleet:
    """A producer with a store of its own (a fresh prefix on the LAN's SeaweedFS), one
    version pushed before any agent starts, and a reader's keyring exported for agents."""
    store_url = f"s3://{store_lan.s3.bucket}/{store_lan.s3.new_prefix()}"
    cli = producer_cli(root / "home", store_url, store_lan.s3.endpoint)
    seed = root / "seed"
    seed.mkdir()
    (seed / "README").write_text("the dataset's first push, before any agent starts\n")
    cli("push", str(seed), f"{DATASET}:0.0.1")
    keys = root / "reader.json"
    cli("keys", "export", "--reader", str(keys), "--dataset", DATASET)
    return Fleet(store_lan.lan, cli, store_url, keys, root)


@pytest.fixture(scope="module")
def fleet(store_lan: StoreLan, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(store_lan, tmp_path_factory.mktemp("fleet"))


def write_version(root: Path, seed: int, mib: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(mib // 4):
        (root / f"part-{i}.bin").write_bytes(rng.randbytes(4 << 20))
    (root / "VERSION").write_text(f"{seed}\n")


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wait_live(agents: list[LanAgent], manifest: str, timeout: float = 60) -> None:
    for agent in agents:
        agent.wait_for(
            lambda s: any(
                ch["live"] and ch["live"]["manifest"] == manifest for ch in s["subscriptions"]
            ),
            f"{STABLE} live at {manifest[:12]}",
            timeout,
        )


def converged(agents: list[LanAgent], manifest: str, src: Path) -> None:
    wait_live(agents, manifest)
    expected = tree(src)
    for agent in agents:
        assert tree(agent.data_root / DATASET / "stable") == expected, agent.host
