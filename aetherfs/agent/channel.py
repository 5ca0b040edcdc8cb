"""One subscription's loop: watch the channel, and on a move build the version and switch.

Errors never end the loop: they are recorded in status and retried with exponential backoff,
while the version already live keeps being served from disk.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import TYPE_CHECKING

import trio

from aetherfs.agent.build import build_version
from aetherfs.agent.state import ChannelState, Progress, VersionLive
from aetherfs.agent.upkeep import ensure_data_root, restore
from aetherfs.core.ids import ManifestId
from aetherfs.errors import AetherError, StoreUnavailable
from aetherfs.fetch.metered import Stopped
from aetherfs.trust import TrustStore

if TYPE_CHECKING:
    from aetherfs.agent.daemon import Agent


class ChannelLoop:
    def __init__(self, agent: Agent, channel: ChannelState) -> None:
        self.agent = agent
        self.channel = channel
        self.sub = channel.subscription
        self.wake = trio.Event()
        self.highest_seq = 0  # of the record last accepted (the hub watch skips older events)
        config = agent.config
        self.trust = TrustStore.for_agent(config.state_dir, config.data_root, config.store_url)

    def poke(self) -> None:
        """Check now instead of waiting for the poll interval."""
        self.wake.set()

    async def run(self) -> None:
        agent, channel, log = self.agent, self.channel, self.agent.log
        failures = 0
        while True:
            try:
                await self.check()
                failures = 0
                channel.retries, channel.next_retry = 0, None
                if channel.state != "idle":
                    channel.state = "idle"
                delay = agent.config.poll_interval
            except Stopped:
                await trio.sleep_forever()  # the nursery is being cancelled
                return
            except Exception as exc:  # a daemon logs, reports, retries: nothing ends the loop
                failures += 1
                message = describe(exc)
                if isinstance(exc, StoreUnavailable | OSError):
                    agent.state.store_reachable = False
                delay = min(
                    agent.config.retry_max,
                    agent.config.poll_interval * math.pow(2, min(failures - 1, 20)),
                )
                channel.state = "retrying"
                channel.progress = None
                channel.retries = failures
                channel.next_retry = time.time() + delay
                agent.state.error(channel, message)
                log.error(
                    "subscription.error",
                    subscription=str(self.sub),
                    error=message,
                    retry_in=round(delay, 3),
                    attempt=failures,
                )
                if not isinstance(exc, AetherError | OSError):
                    log.error("subscription.traceback", trace=traceback.format_exc())
            with trio.move_on_after(delay):
                await self.wake.wait()
            self.wake = trio.Event()

    async def check(self) -> None:
        agent, channel = self.agent, self.channel
        if agent.config.read_only:
            await self.follow()
            return
        await ensure_data_root(agent)
        record = await agent.watcher.current(self.sub)
        agent.state.store_reachable = True
        channel.last_check = time.time()
        # Refused (TagRollback) if older than what this agent trusted, even before a restart.
        store_id = (await agent.repos.get()).keyring.store_id
        self.highest_seq = (await agent.disk(self.trust.accept, store_id, record)).seq
        channel.remote_manifest = record.manifest_id.hex()
        live = await agent.disk(agent.dataroot.live, self.sub.dataset, self.sub.channel)
        if live == record.manifest_id:
            return
        await self.make_live(record.manifest_id)

    async def follow(self) -> None:
        """Read-only mode: another agent writes; report (and announce) what its links name."""
        agent, channel, sub = self.agent, self.channel, self.sub
        channel.last_check = time.time()
        live = await agent.disk(agent.dataroot.live, sub.dataset, sub.channel)
        if live is None or live.hex() == channel.live_manifest:
            return
        link = agent.dataroot.channel_link(sub.dataset, sub.channel)
        channel.live_manifest, channel.live_path, channel.live_since = (
            live.hex(),
            str(link),
            time.time(),
        )
        agent.log.info("version.live", subscription=str(sub), manifest=live.hex(), path=str(link))
        agent.state.announce(
            VersionLive(sub.dataset, sub.channel, live.hex(), str(link), channel.live_since)
        )

    async def make_live(self, manifest_id: ManifestId) -> None:
        agent, channel, sub = self.agent, self.channel, self.sub
        async with agent.manifest_lock(manifest_id):
            if not await agent.disk(agent.dataroot.has_version, manifest_id):
                await self.build(manifest_id)
            else:
                await restore(agent, channel, manifest_id)  # a retained version, checked
            async with agent.layout_lock:
                if not await agent.disk(agent.dataroot.has_version, manifest_id):
                    raise AetherError(f"version {manifest_id.short()} vanished; rebuilding")
                link = await agent.disk(
                    agent.dataroot.switch, sub.dataset, sub.channel, manifest_id
                )
        now = time.time()
        channel.live_manifest = manifest_id.hex()
        channel.live_path = str(link)
        channel.live_since = now
        channel.progress = None
        channel.last_error = None
        channel.versions_made_live += 1
        agent.log.info(
            "version.live", subscription=str(sub), manifest=manifest_id.hex(), path=str(link)
        )
        agent.state.announce(
            VersionLive(sub.dataset, sub.channel, manifest_id.hex(), str(link), now)
        )
        await agent.collect()

    async def build(self, manifest_id: ManifestId) -> None:
        agent, channel, sub = self.agent, self.channel, self.sub
        repo = await agent.repos.get()
        manifest = await agent.disk(repo.get_manifest, sub.dataset, manifest_id)
        progress = Progress(manifest_id.hex())
        channel.state, channel.progress = "downloading", progress
        agent.log.info("download.start", subscription=str(sub), manifest=manifest_id.hex())
        agent.building += 1
        try:
            staging, info = await trio.to_thread.run_sync(
                lambda: build_version(
                    repo,
                    agent.cache,
                    agent.dataroot,
                    agent.state,
                    manifest,
                    manifest_id,
                    progress,
                    agent.config.fetch_workers,
                    agent.stopping,
                    agent.store_limit,
                    agent.log.warning,
                ),
                limiter=agent.build_limiter,
            )
            async with agent.layout_lock:
                await agent.disk(agent.dataroot.publish_version, staging, info)
        finally:
            agent.building -= 1
        agent.log.info(
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
    if isinstance(exc, AetherError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
