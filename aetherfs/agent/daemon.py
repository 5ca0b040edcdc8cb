"""The agent daemon, and its composition root: every part is made here, given only the narrow
interfaces it needs, and started in one trio nursery tree, read top-down.

run_agent
  ├─ signals            SIGTERM/SIGINT -> shutdown
  ├─ http (loopback)    REST, /metrics, live files   (Hypercorn trio worker)
  ├─ http (unix socket) the same app
  ├─ grpc               AgentService on its own threads, crossing in with the trio token
  ├─ cache stats        usage and eviction, every few seconds
  ├─ hub report         through a hub: status to the hub's fleet page
  ├─ hub watch          through a hub: its watch stream wakes the channel loops
  ├─ peers              peer exchange (peers.py): SwarmEngine + Discovery; builds fetch through it
  └─ channel loops      one per subscription: decisions (decisions.py) driven on trio's clock

Who is given what: the APIs and the hub report a read-only `StatusView` and a `Control`
(check now, shut down); the watchers and the APIs wake loops through `Wakeups`; the loops and
upkeep work on the data root and cache through `Workspace`. Nothing below imports this module.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from typing import Any

import trio

from aetherfs.agent.api import LiveFiles, serve_http
from aetherfs.agent.channel import ChannelLoop
from aetherfs.agent.config import AgentConfig
from aetherfs.agent.grpc_api import serve_grpc
from aetherfs.agent.log import Logger
from aetherfs.agent.membership import CertificateMembership
from aetherfs.agent.peers import PeerExchange
from aetherfs.agent.ports import Surface
from aetherfs.agent.report import REPORT_EVERY, report_to_hub
from aetherfs.agent.state import AgentState
from aetherfs.agent.wakeups import Wakeups
from aetherfs.agent.watch import HubLink, HubStreamWatcher, RepoHandle, StorePoller, TagWatcher
from aetherfs.agent.workspace import Workspace
from aetherfs.repository import Repository

CACHE_STATS_EVERY = 5.0


class Agent:
    """The parts, made once by `run_agent`; also the `Control` the APIs are given."""

    def __init__(
        self, config: AgentConfig, log: Logger, certificate: CertificateMembership | None = None
    ) -> None:
        self.config = config
        self.log = log
        self.state = AgentState(config)
        self.work = Workspace(config, self.state, log)
        self.repos = RepoHandle(config, self.work.disk_limiter)
        self.watcher: TagWatcher = StorePoller(self.repos)
        self.wakeups = Wakeups(self.state.channels)
        self.rng = random.Random()  # jitter of polls and retries; a test seeds its own
        self.peers = (
            PeerExchange(config, log, self.state, self.work, self.repos, certificate, self.wakeups)
            if config.peers.enabled and not config.read_only
            else None
        )
        self.loops = [
            ChannelLoop(
                config,
                log,
                self.state,
                self.work,
                self.repos,
                self.watcher,
                self.wakeups,
                ch,
                self.rng,
                self.peers,
            )
            for ch in self.state.channels.values()
        ]
        self.report_every = 0.0  # status reports to a hub: only when working through one
        self.hub_watch: HubStreamWatcher | None = None
        self.cancel_scope: trio.CancelScope | None = None
        self.nursery: trio.Nursery | None = None

    def surface(self) -> Surface:
        return Surface(self.state, self, self.repos, self.log)

    def poke(self) -> None:
        self.wakeups.wake_all()

    def shutdown(self, reason: str) -> None:
        """Stop everything: fetch threads between blocks, then every task (trio thread only)."""
        if not self.work.stopping.is_set():
            self.log.info("agent.stopping", reason=reason)
        self.work.stopping.set()
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

    def note_report(self, outcome: dict[str, Any]) -> None:
        self.state.hub_report = outcome


async def run_agent(
    config: AgentConfig,
    log: Logger | None = None,
    open_repo: Callable[[], Repository] | None = None,
    report_every: float = REPORT_EVERY,
    hub: HubLink | None = None,
    certificate: CertificateMembership | None = None,
) -> None:
    """Run until cancelled or asked to stop. `open_repo` replaces opening the store (a hub);
    `hub` names the hub whose watch stream wakes the channel loops; `certificate` admits an
    enrolled agent to its peers (else the keyring's fleet secret does)."""
    log = log or Logger()
    agent = Agent(config, log, certificate)
    if open_repo is not None:
        agent.repos.opener = open_repo
        agent.report_every = report_every
    if hub is not None and not config.read_only:
        agent.hub_watch = HubStreamWatcher(agent.wakeups, hub, log)
        agent.state.hub_watch = agent.hub_watch.status
    work, dataroot = agent.work, agent.work.dataroot
    if not config.read_only:
        await trio.to_thread.run_sync(dataroot.lock, config.wait_for_lock)
    try:
        if not config.read_only:
            removed = await work.disk(dataroot.prepare)
            for path in removed:
                log.info("staging.removed", path=str(path), why="left by an interrupted build")
        for ch in agent.state.channels.values():
            sub = ch.subscription
            live = dataroot.live(sub.dataset, sub.channel)
            if live is not None and dataroot.has_version(live):
                ch.live_manifest = live.hex()
                ch.live_path = str(dataroot.channel_link(sub.dataset, sub.channel))
        await work.refresh_cache(evict=not config.read_only)
        await _serve(agent)
    finally:
        dataroot.unlock()
        log.info("agent.stopped")


async def _serve(agent: Agent) -> None:
    config, log, work = agent.config, agent.log, agent.work
    surface = agent.surface()
    live = LiveFiles(work.dataroot, work.disk_limiter, agent.state.count_read)
    async with trio.open_nursery() as nursery:
        agent.cancel_scope, agent.nursery = nursery.cancel_scope, nursery
        nursery.start_soon(_signals, agent)
        if config.listen.http:
            await nursery.start(serve_http, surface, live, config.listen.http)
        if config.listen.socket:
            await nursery.start(serve_http, surface, live, f"unix:{config.listen.socket}")
        grpc_binds = [config.listen.grpc] if config.listen.grpc else []
        if config.listen.grpc_socket:
            grpc_binds.append(f"unix:{config.listen.grpc_socket}")
        if grpc_binds:
            await nursery.start(serve_grpc, surface, grpc_binds)
        nursery.start_soon(_cache_stats, agent)
        if agent.report_every:
            nursery.start_soon(
                report_to_hub, agent.state, agent.repos, log, agent.note_report, agent.report_every
            )
        if agent.hub_watch is not None:
            nursery.start_soon(agent.hub_watch.run)
        if agent.peers is not None:
            nursery.start_soon(agent.peers.run)
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
    work = agent.work
    while True:
        await trio.sleep(CACHE_STATS_EVERY)
        async with work.layout_lock:
            # While building, blocks just fetched are not pinned yet: keep them for a resume.
            await work.refresh_cache(evict=not work.building and not agent.config.read_only)
