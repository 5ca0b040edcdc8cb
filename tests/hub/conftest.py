"""Fixtures for hub tests: a repository on a fresh local store, a hub serving it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from aetherfs.repo import Repository
from tests.hub.helpers import RunningHub, open_repo, start_hub


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return open_repo((tmp_path / "store").as_uri(), tmp_path / "keys" / "hub.json")


@pytest.fixture
async def hub(nursery: trio.Nursery, repo: Repository) -> AsyncIterator[RunningHub]:
    running = await start_hub(nursery, repo)
    yield running
    running.cancel.cancel()
