"""The agent daemon: one trio nursery tree, read top-down.

run_agent
  ├─ signals            SIGTERM/SIGINT -> shutdown
  ├─ http (loopback)    REST, /metrics, live files   (Hypercorn trio worker)
  ├─ http (unix socket) the same app
  ├─ grpc               AgentService on its own threads, crossing in with the trio token
  ├─ cache stats        usage and eviction, every few seconds
  ├─ hub watch          through a hub: its watch stream wakes the channel loops
  └─ channel loops      one per subscription: watch, build, switch
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import trio

from aetherfs.agent.channel import ChannelLoop
from aetherfs.agent.config import AgentConfig
from aetherfs.agent.dataroot import DataRoot
from aetherfs.agent.log import Logger
from aetherfs.agent.report import REPORT_EVERY, report_to_hub
from aetherfs.agent.state import AgentState
from aetherfs.agent.watch import HubLink, HubStreamWatcher, RepoHandle, StorePoller, TagWatcher
from aetherfs.core.ids import ManifestId
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.metered import RateLimit
from aetherfs.repo import Repository

T = TypeVar("T")

CACHE_STATS_EVERY = 5.0


class Agent:
    """Everything the tasks share; created once by `run_agent`."""

    def __init__(self, config: AgentConfig, log: Logger) -> None:
        self.config = config
        self.log = log
        self.state = AgentState(config)
        self.dataroot = DataRoot(config.data_root)
        self.cache = BlockCache(config.cache_dir, config.cache_limit)
        self.disk_limiter = trio.CapacityLimiter(4)
        self.build_limiter = trio.CapacityLimiter(2)
        self.repos = RepoHandle(config, self.disk_limiter)
        self.watcher: TagWatcher = StorePoller(self.repos)
        self.store_limit = RateLimit(config.store_rate) if config.store_rate else None
        self.stopping = threading.Event()  # seen by fetch threads: stop between blocks
        self.layout_lock = trio.Lock()  # publish, switch and collect never interleave
        self._manifest_locks: dict[ManifestId, trio.Lock] = {}
        self.building = 0
        self.report_every = 0.0  # status reports to a hub: only when working through one
        self.hub_watch: HubStreamWatcher | None = None
        self.loops = [ChannelLoop(self, ch) for ch in self.state.channels.values()]
        self.cancel_scope: trio.CancelScope | None = None
        self.nursery: trio.Nursery | None = None
        self.trio_token: trio.lowlevel.TrioToken | None = None

    async def disk(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (disk, store) on a worker thread."""
        return await trio.to_thread.run_sync(lambda: fn(*args), limiter=self.disk_limiter)

    @contextlib.asynccontextmanager
    async def manifest_lock(self, manifest_id: ManifestId) -> AsyncIterator[None]:
        lock = self._manifest_locks.setdefault(manifest_id, trio.Lock())
        async with lock:
            yield

    def shutdown(self, reason: str) -> None:
        """Stop everything: fetch threads between blocks, then every task (trio thread only)."""
        if not self.stopping.is_set():
            self.log.info("agent.stopping", reason=reason)
        self.stopping.set()
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()

    def request_shutdown(self, reason: str) -> None:
        """Shut down a moment from now, so the API call that asked gets its answer."""
        if self.nursery is None:
            self.shutdown(reason)
            return

        async def later() -> None:
            await trio.sleep(0.1)
            self.shutdown(reason)

        self.nursery.start_soon(later)

    def poke(self) -> None:
        for loop in self.loops:
            loop.poke()

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


async def run_agent(
    config: AgentConfig,
    log: Logger | None = None,
    open_repo: Callable[[], Repository] | None = None,
    report_every: float = REPORT_EVERY,
    hub: HubLink | None = None,
) -> None:
    """Run until cancelled or asked to stop. `open_repo` replaces opening the store (a hub);
    `hub` names the hub whose watch stream wakes the channel loops."""
    log = log or Logger()
    agent = Agent(config, log)
    if open_repo is not None:
        agent.repos.opener = open_repo
        agent.report_every = report_every
    if hub is not None and not config.read_only:
        agent.hub_watch = HubStreamWatcher(agent, hub)
        agent.state.hub_watch = agent.hub_watch.status
    dataroot = agent.dataroot
    if not config.read_only:
        await trio.to_thread.run_sync(dataroot.lock, config.wait_for_lock)
    try:
        if not config.read_only:
            removed = await agent.disk(dataroot.prepare)
            for path in removed:
                log.info("staging.removed", path=str(path), why="left by an interrupted build")
        for ch in agent.state.channels.values():
            sub = ch.subscription
            live = dataroot.live(sub.dataset, sub.channel)
            if live is not None and dataroot.has_version(live):
                ch.live_manifest = live.hex()
                ch.live_path = str(dataroot.channel_link(sub.dataset, sub.channel))
        await agent.refresh_cache(evict=not config.read_only)
        await _serve(agent)
    finally:
        dataroot.unlock()
        log.info("agent.stopped")


async def _serve(agent: Agent) -> None:
    from aetherfs.agent.api import serve_http
    from aetherfs.agent.grpc_api import serve_grpc

    config, log = agent.config, agent.log
    agent.trio_token = trio.lowlevel.current_trio_token()
    async with trio.open_nursery() as nursery:
        agent.cancel_scope, agent.nursery = nursery.cancel_scope, nursery
        nursery.start_soon(_signals, agent)
        if config.listen.http:
            await nursery.start(serve_http, agent, config.listen.http)
        if config.listen.socket:
            await nursery.start(serve_http, agent, f"unix:{config.listen.socket}")
        grpc_binds = [config.listen.grpc] if config.listen.grpc else []
        if config.listen.grpc_socket:
            grpc_binds.append(f"unix:{config.listen.grpc_socket}")
        if grpc_binds:
            await nursery.start(serve_grpc, agent, grpc_binds)
        nursery.start_soon(_cache_stats, agent)
        if agent.report_every:
            nursery.start_soon(report_to_hub, agent, agent.report_every)
        if agent.hub_watch is not None:
            nursery.start_soon(agent.hub_watch.run)
        for loop in agent.loops:
            nursery.start_soon(loop.run)
        log.info(
            "agent.started",
            data_root=str(config.data_root),
            store=config.store_url,
            subscriptions=",".join(str(s) for s in config.subscriptions),
            http=config.listen.http or None,
            socket=str(config.listen.socket) if config.listen.socket else None,
            grpc=config.listen.grpc or None,
        )


async def _signals(agent: Agent) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            agent.shutdown(signal.Signals(signum).name)


async def _cache_stats(agent: Agent) -> None:
    while True:
        await trio.sleep(CACHE_STATS_EVERY)
        async with agent.layout_lock:
            # While building, blocks just fetched are not pinned yet: keep them for a resume.
            await agent.refresh_cache(evict=not agent.building and not agent.config.read_only)
