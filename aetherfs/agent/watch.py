"""Tag watchers: how the agent learns that a channel moved.

`StorePoller` reads the signed tag record from the store (verified by `Repository`). A hub
client with a long-poll or streaming watch endpoint implements the same protocol later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

from aetherfs.agent.config import AgentConfig, Subscription
from aetherfs.core.tags import TagRecord
from aetherfs.repo import Repository, open_keyring
from aetherfs.store import open_store


class TagWatcher(Protocol):
    async def current(self, sub: Subscription) -> TagRecord:
        """The verified record the channel holds now (raises AetherError when it cannot tell)."""
        ...


class RepoHandle:
    """Opens the store and keyring on first use, and again after a failure to open."""

    def __init__(self, config: AgentConfig, limiter: trio.CapacityLimiter) -> None:
        self.config = config
        self.limiter = limiter
        self._repo: Repository | None = None
        self._lock = trio.Lock()
        self.opener: Callable[[], Repository] = self._open

    def _open(self) -> Repository:
        c = self.config
        store = open_store(c.store_url, c.s3_endpoint, c.s3_region)
        keyring = open_keyring(store, c.keys_dir, c.keys_path, create=False)
        return Repository(store, keyring)

    async def get(self) -> Repository:
        async with self._lock:
            if self._repo is None:
                self._repo = await trio.to_thread.run_sync(self.opener, limiter=self.limiter)
            return self._repo


class StorePoller:
    def __init__(self, repos: RepoHandle) -> None:
        self.repos = repos

    async def current(self, sub: Subscription) -> TagRecord:
        repo = await self.repos.get()
        signed = await trio.to_thread.run_sync(
            repo.resolve, sub.dataset, sub.channel, limiter=self.repos.limiter
        )
        return signed.record
