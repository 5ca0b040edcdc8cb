"""Keeping the data root true while the agent runs (called from the channel loops).

`restore` checks a retained version before a channel is switched back to it
(`build.restore_version`: every file's stat against what was written, re-hash and repair of
what differs). `ensure_data_root` notices a data root removed or replaced under the agent,
reports it as the local fault it is, recreates the layout, the lock and the cache, and forgets
live versions that went with it, so the loops rebuild them.
"""

from __future__ import annotations

import trio

from aetherfs.agent.build import restore_version
from aetherfs.agent.config import AgentConfig
from aetherfs.agent.dataroot import DataRootLost
from aetherfs.agent.log import Logger
from aetherfs.agent.state import AgentState, ChannelState
from aetherfs.agent.wakeups import Wakeups
from aetherfs.agent.workspace import Workspace
from aetherfs.core.ids import ManifestId
from aetherfs.repository import Repository


async def restore(
    log: Logger,
    state: AgentState,
    work: Workspace,
    repo: Repository,
    channel: ChannelState,
    manifest_id: ManifestId,
) -> None:
    """Before a retained version goes live again: check it, put right what was changed."""
    sub = channel.subscription
    channel.state = "checking"  # the loop sets it back to idle when the check is over
    work.building += 1  # `collect` must not remove the version while it is checked
    try:
        result = await trio.to_thread.run_sync(
            lambda: restore_version(
                repo,
                work.cache,
                work.dataroot,
                state,
                manifest_id,
                work.stopping,
                work.store_limit,
                work.trees,
            ),
            limiter=work.build_limiter,
        )
    finally:
        work.building -= 1
    found = (
        (log.info, "version.rechecked", result.rehashed, "stat changed, bytes right"),
        (
            log.warning,
            "version.repaired",
            result.repaired,
            "changed since written (a write through a shared hard link?): written afresh",
        ),
    )
    for emit, event, paths, why in found:
        for path in paths:
            emit(event, subscription=str(sub), manifest=manifest_id.hex(), path=path, why=why)
    channel.files_repaired += len(result.repaired)


async def ensure_data_root(
    config: AgentConfig, log: Logger, state: AgentState, work: Workspace, wakeups: Wakeups
) -> None:
    """If the data root went away under the agent: say so, recreate it, rebuild what was live."""
    if config.read_only:
        return
    dataroot = work.dataroot
    async with work.layout_lock:
        why = await work.disk(dataroot.lost)
        if why is None:
            return
        log.error("dataroot.lost", data_root=str(dataroot.root), why=why)
        await work.disk(dataroot.recreate)
        work.forget_trees()  # their files went with the root: index them again once rebuilt
        cache_dir = config.cache_dir
        if cache_dir.is_relative_to(dataroot.root) or not cache_dir.is_dir():
            await work.replace_cache()
        lives = {
            ch.subscription: await work.disk(
                dataroot.live, ch.subscription.dataset, ch.subscription.channel
            )
            for ch in state.channels.values()
        }
        await work.refresh_cache(evict=False)  # status's versions and cache: what is there now
        # Then status changes in one step (nothing awaited): the versions gone, the links
        # gone with them (no path shown that is not there), and why.
        error = DataRootLost.because(dataroot.root, why)
        message = f"{type(error).__name__}: {error}"
        state.error(None, message)
        for ch in state.channels.values():
            live = lives[ch.subscription]
            if ch.live_manifest is not None and (live is None or live.hex() != ch.live_manifest):
                ch.live_manifest = ch.live_path = None
                ch.live_since = None
                state.error(ch, message)
        log.info("dataroot.recreated", data_root=str(dataroot.root))
    wakeups.wake_all()
