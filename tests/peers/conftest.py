"""Agents in network namespaces on one bridge: a fleet for the peer tests.

One LAN per module (building it costs seconds); every agent is the real CLI (`aetherfs agent`)
in its own namespace, asked over its Unix socket from here. The store is a directory every
namespace sees (the file system is shared): each agent's store reads are counted by its engine
(`fetches[].store_reads` in status), which is what the tests check. SeaweedFS in the store
namespace (`run_seaweedfs_in`) was the plan; with other LANs on this host its master took
another LAN's volume server for its own (it then failed every write), so it is not used here.
"""

from __future__ import annotations

import json
import os
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
from tests.fixtures.netns import Lan, build_lan

PEER_PORT = 7422
HOSTS = ["a0", "a1", "a2", "a3", "a4"]
DATASET = "team/geo"


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

    def start(self) -> LanAgent:
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
        self.wait_for(
            lambda s: s["peer_exchange"]["enabled"] or s["peer_exchange"]["problem"], "peers"
        )
        return self

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

    def agent(self, host: str, *args: str, keys: Path | None = None) -> LanAgent:
        env = dict(self.cli.env)
        agent = LanAgent(
            self.lan,
            host,
            self.root / f"{host}-root",
            ["--store", self.store_url, "--keys", str(keys or self.keys), *args],
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


def producer_cli(home: Path, store_url: str) -> Cli:
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
    return Cli(env, home)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    with build_lan([*HOSTS, "x"]) as lan:
        store_url = (root / "store").as_uri()
        cli = producer_cli(root / "home", store_url)
        seed = root / "seed"
        seed.mkdir()
        (seed / "README").write_text("the dataset's first push, before any agent starts\n")
        cli("push", str(seed), f"{DATASET}:0.0.1")
        keys = root / "reader.json"
        cli("keys", "export", "--reader", str(keys), "--dataset", DATASET)
        yield Fleet(lan, cli, store_url, keys, root)
