"""The agent's disk: its data root, block cache and the index of its trees, the limiters of the
threads that touch them, and the locks that keep publish, switch and collect from interleaving.

The channel loops and upkeep take a `Workspace`; status learns what is on disk through
`refresh_cache`. The cache is replaced (not patched) when the data root it lived in is lost.

About one copy of a live version on disk: a version's blocks are in the cache while it is
built (nothing is evicted while a build runs, so a build killed and restarted fetches only
what it lacks), and once its tree is published it is indexed (`TreeBlocks`) and its blocks
pin nothing; `trim` then drops from the cache every block a tree serves, once no peer has read
one from the cache for `cache_linger` seconds since the last switch: during a rollout peers
are served the cached bytes as they are (cheaper than sealing them again), after it the tree
is the only copy. The budget (`cache_limit`) evicts as before, sparing only blocks of kept
versions no tree serves (a version whose manifest could not be read to index it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import trio

from aetherfs.agent.config import AgentConfig
from aetherfs.agent.dataroot import DataRoot
from aetherfs.agent.log import Logger
from aetherfs.agent.state import AgentState
from aetherfs.agent.tree_blocks import TreeBlocks, tree_bytes
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import Manifest
from aetherfs.errors import AetherError
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
        self.trees = TreeBlocks(log.warning)  # the versions on disk, as a block store
        state.served_view = self.trees.served
        self.trees_indexed = False  # every version on disk indexed since the start (or loss)
        # time.monotonic() of the last peer read from the cache and of the last switch, and
        # whether anything went live since the last trim: `trim` acts on these.
        self.cache_read_at = 0.0
        self.switched_at = time.monotonic()  # a restart mid-rollout lingers too
        self.untrimmed = False
        self.disk_limiter = trio.CapacityLimiter(4)
        self.build_limiter = trio.CapacityLimiter(2)
        self.store_limit = RateLimit(config.store_rate) if config.store_rate else None
        self.stopping = threading.Event()  # seen by fetch threads: stop between blocks
        self.layout_lock = trio.Lock()  # publish, switch and collect never interleave
        self._manifest_locks: dict[ManifestId, trio.Lock] = {}
        self.building = 0  # builds and checks running: collect waits for them
        # Told of the versions each collect removed (their manifests are dropped too).
        self.on_removed: list[Callable[[list[ManifestId]], None]] = []

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
        """After a switch: remove versions beyond `keep_versions`, evict cache blocks nobody
        pins, and trim what the trees serve (at once if `cache_linger` is 0)."""
        self.switched_at = time.monotonic()
        self.untrimmed = True
        async with self.layout_lock:
            if self.building:
                return  # a build may hard-link from an old version: collect after it
            removed = await self.disk(self.dataroot.collect, self.config.keep_versions)
            for manifest_id in removed:
                self.trees.forget(manifest_id)
                self.log.info("version.removed", manifest=manifest_id.hex())
            for hook in self.on_removed:
                hook(removed)
            await self.refresh_cache()
        await self.trim()

    # Trees ----------------------------------------------------------------------------------
    async def index_version(self, manifest_id: ManifestId, manifest: Manifest) -> None:
        """A version published (or found) on disk: its tree serves its blocks from now on."""
        base = self.dataroot.version_dir(manifest_id)
        count = await self.disk(self.trees.index, manifest_id, manifest, base)
        self.untrimmed = True
        self.log.info("tree.indexed", manifest=manifest_id.hex(), blocks=count)

    async def index_on_disk(self, manifest_of: Callable[[str, ManifestId], Manifest]) -> None:
        """Once after start (and after the data root was lost): index every version on disk.
        A version whose manifest cannot be read is left out (its blocks stay pinned)."""
        if self.trees_indexed:
            return
        self.trees_indexed = True
        indexed = self.trees.indexed()
        for info in await self.disk(self.dataroot.all_versions):
            if info.manifest_id in indexed:
                continue
            try:
                manifest = await self.disk(manifest_of, info.dataset, info.manifest_id)
                await self.index_version(info.manifest_id, manifest)
            except AetherError as exc:
                self.log.warning("tree.unindexed", manifest=info.manifest_id.hex(), why=str(exc))

    def forget_trees(self) -> None:
        """The data root was lost: no tree serves anything until indexed again."""
        self.trees.clear()
        self.trees_indexed = False

    async def trim(self) -> None:
        """Drop from the cache what the trees serve, once the LAN has been quiet (no peer read
        from the cache) for `cache_linger` seconds since the last switch, and no build runs."""
        if not self.untrimmed or self.building:
            return
        quiet = time.monotonic() - max(self.cache_read_at, self.switched_at)
        if quiet < self.config.cache_linger:
            return
        async with self.layout_lock:
            if self.building:
                return
            self.untrimmed = False
            freed = await self.disk(self.cache.discard, self.trees.known)
            self.state.cache_evicted_bytes += freed
            self.log.info("cache.trimmed", bytes=freed, why="the live trees serve these blocks")
            await self.refresh_cache(evict=False)

    async def refresh_cache(self, evict: bool = True) -> None:
        """Evict (unless told not to), then put the cache's and the versions' figures in status."""
        freed = 0
        if evict:
            served = self.trees.indexed()
            pinned = await self.disk(self.dataroot.pinned_blocks, served)
            freed = await self.disk(self.cache.evict, pinned)
        stats = await self.disk(self.cache.stats)
        infos = sorted(await self.disk(self.dataroot.all_versions), key=lambda i: i.built)
        dirs = [self.dataroot.version_dir(i.manifest_id) for i in infos]
        s = self.state
        s.tree_bytes = await self.disk(tree_bytes, dirs)
        s.cache_disk_bytes = await self.disk(tree_bytes, [self.cache.root])
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
            for info in infos
        ]
        if freed:
            self.log.info("cache.evicted", bytes=freed, cache_bytes=stats.bytes)
