"""Agents in real processes: started with the real CLI, asked over their real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli
from tests.fixtures.ports import free_port


class AgentProcess:
    def __init__(
        self, cli: Cli, data_root: Path, args: list[str], log: Path, peers: bool = False
    ) -> None:
        self.cli = cli
        self.data_root = data_root
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.log_path = log
        self.args = [
            "agent",
            "--data-root",
            str(data_root),
            "--listen-http",
            f"127.0.0.1:{self.http_port}",
            "--listen-grpc",
            f"127.0.0.1:{self.grpc_port}",
            # Peers are on by default; these tests are about other things and run in the root
            # namespace, where mDNS would leave the host (peer tests: tests/peers/, namespaces).
            *([] if peers else ["--no-peers"]),
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_path: Path | None = None
        self.over_http = False  # ask over loopback HTTP instead of the Unix socket

    @property
    def socket(self) -> Path:
        return self.socket_path or self.data_root / ".agent" / "agent.sock"

    @property
    def grpc_socket(self) -> Path:
        return self.data_root / ".agent" / "grpc.sock"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True) -> AgentProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aetherfs.cli.main", *self.args],
            env=self.cli.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited {self.process.returncode}: {self.log()}")
            if "event=agent.started" in self.log():
                return
            time.sleep(0.05)
        raise AssertionError(f"agent not ready in {timeout}s: {self.log()}")

    def status(self) -> dict[str, Any]:
        if self.over_http:
            client = httpx.Client(base_url=self.url, timeout=10)
        else:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            client = httpx.Client(transport=transport, base_url="http://agent", timeout=10)
        with client:
            response = client.get("/v1/status")
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

    def channel(self, ref: str) -> dict[str, Any]:
        for ch in self.status()["subscriptions"]:
            if ch["subscription"] == ref:
                return dict(ch)
        raise AssertionError(f"no subscription {ref}")

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        snap: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited {self.process.returncode}: {self.log()}")
            snap = self.status()
            if check(snap):
                return snap
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {json.dumps(snap, indent=1)}")

    def wait_live(self, ref: str, manifest: str, timeout: float = 30) -> dict[str, Any]:
        def live(snap: dict[str, Any]) -> bool:
            for ch in snap["subscriptions"]:
                if ch["subscription"] == ref and ch["live"] and ch["live"]["manifest"] == manifest:
                    return True
            return False

        return self.wait_for(live, f"{ref} live at {manifest[:12]}", timeout)

    def stop(self, timeout: float = 15) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def local_store(cli: Cli, tmp_path: Path) -> Cli:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    return cli


AgentFactory = Callable[..., AgentProcess]


@pytest.fixture
def agents(local_store: Cli, tmp_path: Path) -> Iterator[AgentFactory]:
    started: list[AgentProcess] = []

    def make(*args: str, data_root: Path | None = None, start: bool = True) -> AgentProcess:
        root = data_root or tmp_path / "root"
        agent = AgentProcess(
            local_store,
            root,
            ["--poll-interval", "0.2", "--retry-max", "1", *args],
            tmp_path / f"agent-{len(started)}.log",
        )
        started.append(agent)
        if start:
            agent.start()
        return agent

    yield make
    for agent in started:
        agent.close()


def push(cli: Cli, src: Path, ref: str, *tags: str) -> str:
    """Publish `src`; returns the manifest id."""
    args = ["push", str(src), ref, "--json"]
    for tag in tags:
        args += ["--tag", tag]
    manifest: str = json.loads(cli(*args).out)["manifest"]
    return manifest


STABLE = "team/geo-db:stable"


def live_on_stable(
    agents: AgentFactory, cli: Cli, src: Path, big: int, *args: str
) -> tuple[AgentProcess, str]:
    """`src` (seed 1) published as team/geo-db:1.0.0 on stable, and an agent (with `args`)
    that has it live. Returns the agent and the manifest id."""
    write_dataset(src, 1, big=big)
    manifest = push(cli, src, "team/geo-db:1.0.0", "stable")
    agent = agents("--subscribe", STABLE, *args)
    agent.wait_live(STABLE, manifest)
    return agent, manifest


def tree(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def write_dataset(root: Path, seed: int, big: int = 2_000_000) -> None:
    import random

    rng = random.Random(seed)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "big.bin").write_bytes(rng.randbytes(big))
    (root / "sub/small.txt").write_text(f"version {seed}\n")


_ = os
