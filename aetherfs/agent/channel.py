"""One subscription's loop: watch the channel, and on a move build the version and switch.

What to do and when is decided by `ChannelDecisions` (pure, on a clock passed in) and driven by
`driver.drive`; this module does the I/O each decision asks for: read and verify the tag record,
build or check the version, switch the link, and write what happened into status. Errors never
end the loop: they are recorded in status and retried with a jittered backoff, while the
version already live keeps being served from disk. A channel that does not exist yet is waited
for at the poll interval, not treated as an error.
"""

from __future__ import annotations

import random
import time
import traceback

import trio

from aetherfs.agent.build import build_version
from aetherfs.agent.config import AgentConfig
from aetherfs.agent.decisions import ChannelDecisions, MakeLive, Next, Timing
from aetherfs.agent.driver import drive
from aetherfs.agent.log import Logger
from aetherfs.agent.peers import PeerExchange
from aetherfs.agent.state import AgentState, ChannelState, Progress, VersionLive
from aetherfs.agent.upkeep import ensure_data_root, restore
from aetherfs.agent.wakeups import Wakeups
from aetherfs.agent.watch import RepoHandle, TagWatcher
from aetherfs.agent.workspace import Workspace
from aetherfs.core.ids import ManifestId
from aetherfs.errors import AetherError, NotFound, StoreUnavailable
from aetherfs.fetch.metered import Stopped
from aetherfs.trust import TrustStore


def timing(config: AgentConfig) -> Timing:
    return Timing(config.poll_interval, config.retry_max)


class ChannelLoop:
    def __init__(
        self,
        config: AgentConfig,
        log: Logger,
        state: AgentState,
        work: Workspace,
        repos: RepoHandle,
        watcher: TagWatcher,
        wakeups: Wakeups,
        channel: ChannelState,
        rng: random.Random,
        peers: PeerExchange | None = None,
    ) -> None:
        self.config, self.log, self.state, self.work = config, log, state, work
        self.repos, self.watcher, self.wakeups = repos, watcher, wakeups
        self.channel = channel
        self.sub = channel.subscription
        self.rng = rng
        self.peers = peers
        self.trust = TrustStore.for_agent(config.state_dir, config.data_root, config.store_url)
        self.decisions = ChannelDecisions(timing(config), rng, trio.current_time())

    async def run(self) -> None:
        await drive(self.decisions, self.wakeups, self.sub, self.look, self.outcome)

    async def look(self) -> bool:
        try:
            return await self.check()
        except Stopped:
            await trio.sleep_forever()  # the nursery is being cancelled
            raise

    def outcome(self, next_: Next, exc: Exception | None) -> None:
        """Status and the log, after each check."""
        channel = self.channel
        in_ = next_.at - trio.current_time()
        channel.state, channel.retries = next_.state, next_.attempt
        if exc is None:
            channel.next_retry = None
            return
        message = describe(exc)
        if isinstance(exc, StoreUnavailable | OSError):
            self.state.store_reachable = False
        channel.progress = None
        channel.next_retry = time.time() + in_
        self.state.error(channel, message)
        self.log.error(
            "subscription.error",
            subscription=str(self.sub),
            error=message,
            retry_in=round(in_, 3),
            attempt=next_.attempt,
        )
        if not isinstance(exc, AetherError | OSError):
            self.log.error("subscription.traceback", trace="".join(traceback.format_exception(exc)))

    async def check(self) -> bool:
        """Look at the channel and act on it; False if it does not exist yet."""
        work, channel = self.work, self.channel
        if self.config.read_only:
            await self.follow()
            return True
        await ensure_data_root(self.config, self.log, self.state, work, self.wakeups)
        await work.trim()  # the cache's copies of live versions, once the LAN is quiet
        try:
            record = await self.watcher.current(self.sub)
        except NotFound as exc:
            self.state.store_reachable = True
            channel.last_check = time.time()
            if channel.waiting is None:
                self.log.info("subscription.waiting", subscription=str(self.sub), why=str(exc))
            channel.waiting = f"{exc}: waiting for its first publish"
            channel.last_error = None  # not an error: nothing to put right
            return False
        self.state.store_reachable = True
        channel.waiting = None
        channel.last_check = time.time()
        # Refused (TagRollback) if older than what this agent trusted, even before a restart.
        repo = await self.repos.get()
        await work.index_on_disk(repo.get_manifest)  # once: the trees serve their blocks
        store_id = repo.keyring.store_id
        accepted = await work.disk(self.trust.accept, store_id, record)
        channel.remote_manifest = record.manifest_id.hex()
        live = await work.disk(work.dataroot.live, self.sub.dataset, self.sub.channel)
        on_disk = await work.disk(work.dataroot.has_version, record.manifest_id)
        action = self.decisions.handle_record(accepted.seq, record.manifest_id, live, on_disk)
        if isinstance(action, MakeLive):  # (build or check: asked again under the lock)
            await self.make_live(action.manifest_id)
        elif self.peers is not None and live == record.manifest_id:
            # Live already (say since before a restart): served to peers from the cache.
            await self.peers.offer(await self.repos.get(), live, self.sub.dataset)
        return True

    async def follow(self) -> None:
        """Read-only mode: another agent writes; report (and announce) what its links name."""
        work, channel, sub = self.work, self.channel, self.sub
        channel.last_check = time.time()
        live = await work.disk(work.dataroot.live, sub.dataset, sub.channel)
        if live is None or live.hex() == channel.live_manifest:
            return
        link = work.dataroot.channel_link(sub.dataset, sub.channel)
        channel.live_manifest, channel.live_path, channel.live_since = (
            live.hex(),
            str(link),
            time.time(),
        )
        self.log.info("version.live", subscription=str(sub), manifest=live.hex(), path=str(link))
        self.state.announce(
            VersionLive(sub.dataset, sub.channel, live.hex(), str(link), channel.live_since)
        )

    async def make_live(self, manifest_id: ManifestId) -> None:
        work, channel, sub = self.work, self.channel, self.sub
        async with work.manifest_lock(manifest_id):
            if not await work.disk(work.dataroot.has_version, manifest_id):
                await self.build(manifest_id)
            else:  # a retained version, checked
                await restore(
                    self.log, self.state, work, await self.repos.get(), channel, manifest_id
                )
            async with work.layout_lock:
                if not await work.disk(work.dataroot.has_version, manifest_id):
                    raise AetherError(f"version {manifest_id.short()} vanished; rebuilding")
                link = await work.disk(work.dataroot.switch, sub.dataset, sub.channel, manifest_id)
        now = time.time()
        channel.live_manifest = manifest_id.hex()
        channel.live_path = str(link)
        channel.live_since = now
        channel.progress = None
        channel.last_error = None
        channel.versions_made_live += 1
        self.log.info(
            "version.live", subscription=str(sub), manifest=manifest_id.hex(), path=str(link)
        )
        self.state.announce(
            VersionLive(sub.dataset, sub.channel, manifest_id.hex(), str(link), now)
        )
        await work.collect()

    async def build(self, manifest_id: ManifestId) -> None:
        work, channel, sub, log = self.work, self.channel, self.sub, self.log
        repo = await self.repos.get()
        if self.peers is not None:  # a peer's copy (verified), else the store's
            await self.peers.fetch_manifest(repo, sub.dataset, manifest_id)
        manifest = await work.disk(repo.get_manifest, sub.dataset, manifest_id)
        if self.peers is not None:
            await self.peers.serve_manifest(repo, manifest_id, sub.dataset)
        progress = Progress(manifest_id.hex())
        channel.state, channel.progress = "downloading", progress
        log.info("download.start", subscription=str(sub), manifest=manifest_id.hex())
        work.building += 1
        try:
            swarm = None
            if self.peers is not None:  # every block into the cache, from peers and the store
                swarm = await self.peers.fetch(
                    repo, manifest_id, manifest, progress, self.config.priority(sub)
                )
            count = self.state.count_built if swarm is not None else None
            staging, info = await trio.to_thread.run_sync(
                lambda: build_version(
                    repo,
                    work.cache,
                    work.dataroot,
                    self.state,
                    manifest,
                    manifest_id,
                    progress,
                    self.config.fetch_workers,
                    work.stopping,
                    work.store_limit,
                    log.warning,
                    count,
                    work.trees,
                ),
                limiter=work.build_limiter,
            )
            async with work.layout_lock:
                await work.disk(work.dataroot.publish_version, staging, info)
            await work.index_version(manifest_id, manifest)  # still `building`: nothing trimmed
        finally:
            work.building -= 1
        log.info(
            "download.done",
            subscription=str(sub),
            manifest=manifest_id.hex(),
            files=info.files,
            linked=progress.files_linked,
            bytes=progress.bytes_total,
            blocks_fetched=progress.blocks_missing,
            seconds=round(time.time() - progress.started, 3),
        )


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
