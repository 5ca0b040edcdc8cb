"""Keeping the data root true while the agent runs (called from the channel loops).

`restore` checks a retained version before a channel is switched back to it
(`build.restore_version`: every file's stat against what was written, re-hash and repair of
what differs). `ensure_data_root` notices a data root removed or replaced under the agent,
reports it as the local fault it is, recreates the layout, the lock and the cache, and forgets
live versions that went with it, so the loops rebuild them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from aetherfs.agent.build import restore_version
from aetherfs.agent.dataroot import DataRootLost
from aetherfs.agent.state import ChannelState
from aetherfs.core.ids import ManifestId
from aetherfs.fetch.cache import BlockCache

if TYPE_CHECKING:
    from aetherfs.agent.daemon import Agent


async def restore(agent: Agent, channel: ChannelState, manifest_id: ManifestId) -> None:
    """Before a retained version goes live again: check it, put right what was changed."""
    sub = channel.subscription
    repo = await agent.repos.get()
    channel.state = "checking"  # the loop sets it back to idle when the check is over
    agent.building += 1  # `collect` must not remove the version while it is checked
    try:
        result = await trio.to_thread.run_sync(
            lambda: restore_version(
                repo,
                agent.cache,
                agent.dataroot,
                agent.state,
                manifest_id,
                agent.stopping,
                agent.store_limit,
            ),
            limiter=agent.build_limiter,
        )
    finally:
        agent.building -= 1
    found = (
        (agent.log.info, "version.rechecked", result.rehashed, "stat changed, bytes right"),
        (
            agent.log.warning,
            "version.repaired",
            result.repaired,
            "changed since written (a write through a shared hard link?): written afresh",
        ),
    )
    for emit, event, paths, why in found:
        for path in paths:
            emit(event, subscription=str(sub), manifest=manifest_id.hex(), path=path, why=why)
    channel.files_repaired += len(result.repaired)


async def ensure_data_root(agent: Agent) -> None:
    """If the data root went away under the agent: say so, recreate it, rebuild what was live."""
    if agent.config.read_only:
        return
    dataroot = agent.dataroot
    async with agent.layout_lock:
        why = await agent.disk(dataroot.lost)
        if why is None:
            return
        agent.log.error("dataroot.lost", data_root=str(dataroot.root), why=why)
        await agent.disk(dataroot.recreate)
        cache_dir = agent.config.cache_dir
        if cache_dir.is_relative_to(dataroot.root) or not cache_dir.is_dir():
            old, agent.cache = agent.cache, BlockCache(cache_dir, agent.config.cache_limit)
            await agent.disk(old.close)
        lives = {
            ch.subscription: await agent.disk(
                dataroot.live, ch.subscription.dataset, ch.subscription.channel
            )
            for ch in agent.state.channels.values()
        }
        await agent.refresh_cache(evict=False)  # status's versions and cache: what is there now
        # Then status changes in one step (nothing awaited): the versions gone, the links
        # gone with them (no path shown that is not there), and why.
        error = DataRootLost.because(dataroot.root, why)
        message = f"{type(error).__name__}: {error}"
        agent.state.error(None, message)
        for ch in agent.state.channels.values():
            live = lives[ch.subscription]
            if ch.live_manifest is not None and (live is None or live.hex() != ch.live_manifest):
                ch.live_manifest = ch.live_path = None
                ch.live_since = None
                agent.state.error(ch, message)
        agent.log.info("dataroot.recreated", data_root=str(dataroot.root))
    agent.poke()
