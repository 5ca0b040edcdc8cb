"""Fixtures for hub tests: a repository on a fresh local store, a hub serving it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from aetherfs.hub.config import HubConfig
from aetherfs.repository import StoreRepository
from tests.conftest import Cli
from tests.hub.helpers import RunningHub, open_repo, start_hub


@pytest.fixture
def repo(tmp_path: Path) -> StoreRepository:
    return open_repo((tmp_path / "store").as_uri(), tmp_path / "keys" / "hub.json")


@pytest.fixture
async def hub(nursery: trio.Nursery, repo: StoreRepository) -> AsyncIterator[RunningHub]:
    running = await start_hub(nursery, repo)
    yield running
    running.cancel.cancel()


@pytest.fixture
async def grpc_hub(nursery: trio.Nursery, repo: StoreRepository) -> AsyncIterator[RunningHub]:
    config = HubConfig(listen="127.0.0.1:0", grpc_listen="127.0.0.1:0", poll_interval=0.2)
    running = await start_hub(nursery, repo, config)
    yield running
    running.cancel.cancel()


@dataclass
class HubProcess:
    url: str
    process: subprocess.Popen[str]
    lines: list[str]


@contextmanager
def hub_process(cli: Cli, *args: str) -> Iterator[HubProcess]:
    """`aetherfs hub` in its own process; yields once it listens (port chosen by the OS)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "hub", "--listen", "127.0.0.1:0", *args],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"the hub exited: {''.join(lines)}")
            lines.append(line)
            if line.startswith("hub listening on "):
                url = line.split()[-1]
        assert url is not None, "the hub did not start"
        yield HubProcess(url, process, lines)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def start_hub_process(cli: Cli) -> Callable[..., AbstractContextManager[HubProcess]]:
    return partial(hub_process, cli)
