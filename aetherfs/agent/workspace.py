"""The agent's disk: its data root and block cache, the limiters of the threads that touch them,
and the locks that keep publish, switch and collect from interleaving.

The channel loops and upkeep take a `Workspace`; status learns what is on disk through
`refresh_cache`. The cache is replaced (not patched) when the data root it lived in is lost.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import trio

from aetherfs.agent.config import AgentConfig
from aetherfs.agent.dataroot import DataRoot
from aetherfs.agent.log import Logger
from aetherfs.agent.state import AgentState
from aetherfs.core.ids import ManifestId
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.metered import RateLimit

T = TypeVar("T")


class Workspace:
    def __init__(self, config: AgentConfig, state: AgentState, log: Logger) -> None:
        self.config = config
        self.state = state
        self.log = log
        self.dataroot = DataRoot(config.data_root)
        self.cache = BlockCache(config.cache_dir, config.cache_limit)
        self.disk_limiter = trio.CapacityLimiter(4)
        self.build_limiter = trio.CapacityLimiter(2)
        self.store_limit = RateLimit(config.store_rate) if config.store_rate else None
        self.stopping = threading.Event()  # seen by fetch threads: stop between blocks
        self.layout_lock = trio.Lock()  # publish, switch and collect never interleave
        self._manifest_locks: dict[ManifestId, trio.Lock] = {}
        self.building = 0  # builds and checks running: collect waits for them

    async def disk(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (disk, store) on a worker thread."""
        return await trio.to_thread.run_sync(lambda: fn(*args), limiter=self.disk_limiter)

    @contextlib.asynccontextmanager
    async def manifest_lock(self, manifest_id: ManifestId) -> AsyncIterator[None]:
        lock = self._manifest_locks.setdefault(manifest_id, trio.Lock())
        async with lock:
            yield

    async def replace_cache(self) -> None:
        """A fresh cache where the old one was (its directory went with the data root)."""
        old, self.cache = self.cache, BlockCache(self.config.cache_dir, self.config.cache_limit)
        await self.disk(old.close)

    async def collect(self) -> None:
        """Remove versions beyond `keep_versions`, then evict cache blocks nobody pins."""
        async with self.layout_lock:
            if self.building:
                return  # a build may hard-link from an old version: collect after it
            removed = await self.disk(self.dataroot.collect, self.config.keep_versions)
            for manifest_id in removed:
                self.log.info("version.removed", manifest=manifest_id.hex())
            await self.refresh_cache()

    async def refresh_cache(self, evict: bool = True) -> None:
        """Evict (unless told not to), then put the cache's and the versions' figures in status."""
        freed = 0
        if evict:
            pinned = await self.disk(self.dataroot.pinned_blocks)
            freed = await self.disk(self.cache.evict, pinned)
        stats = await self.disk(self.cache.stats)
        s = self.state
        s.cache_evicted_bytes += freed
        s.cache_bytes, s.cache_blocks = stats.bytes, stats.blocks
        s.cache_corrupt_dropped = self.cache.corrupt_dropped
        s.versions = [
            {
                "manifest": info.manifest_id.hex(),
                "dataset": info.dataset,
                "built": info.built,
                "files": info.files,
                "size": info.size,
                "path": str(self.dataroot.version_dir(info.manifest_id)),
            }
            for info in sorted(await self.disk(self.dataroot.all_versions), key=lambda i: i.built)
        ]
        if freed:
            self.log.info("cache.evicted", bytes=freed, cache_bytes=stats.bytes)
