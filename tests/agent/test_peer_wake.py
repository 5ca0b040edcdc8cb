"""A peer announcing a version of a subscribed dataset that is not live here wakes that
dataset's channel loops at once (they then read the tag from the store), at most once a
second per dataset."""

from __future__ import annotations

from pathlib import Path

import trio

from aetherfs.agent.config import Subscription, build_config
from aetherfs.agent.daemon import Agent
from aetherfs.agent.decisions import Wake
from aetherfs.agent.log import Logger
from aetherfs.agent.peers import AnnounceWakes
from aetherfs.agent.state import ChannelState
from aetherfs.agent.wakeups import Wakeups
from aetherfs.core.ids import ManifestId
from aetherfs.protocol.admission import DatasetAccess

OLD, NEW = ManifestId(bytes(32)), ManifestId(bytes([1]) * 32)
STABLE, BETA = Subscription("models", "stable"), Subscription("models", "beta")
OTHER = Subscription("other", "latest")


def setup() -> tuple[Wakeups, AnnounceWakes]:
    channels = {sub: ChannelState(sub) for sub in (STABLE, BETA, OTHER)}
    channels[STABLE].live_manifest = OLD.hex()
    channels[BETA].live_manifest = NEW.hex()  # beta already runs the announced version
    wakeups = Wakeups(channels)
    return wakeups, AnnounceWakes(wakeups, channels, every=1.0)


async def test_an_announced_version_wakes_the_loops_of_its_dataset_that_lag() -> None:
    wakeups, wakes = setup()
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:

            async def loop() -> None:
                # The channel loop's wait, with its next poll far away.
                assert await wakeups.wait(STABLE, trio.current_time() + 60) == Wake(look=True)

            nursery.start_soon(loop)
            await trio.sleep(0.01)
            assert wakes.announced("models", NEW, trio.current_time())
    assert wakeups.take(BETA) is None  # it is live there already
    assert wakeups.take(OTHER) is None  # another dataset


async def test_wakes_are_at_most_one_a_second_per_dataset() -> None:
    wakeups, wakes = setup()
    assert wakes.announced("models", NEW, 100.0)
    assert wakeups.take(STABLE) == Wake(look=True)
    # A peer announcing version after version (made up, say) gets no more store reads out of us.
    assert not wakes.announced("models", ManifestId(bytes([2]) * 32), 100.5)
    assert wakeups.take(STABLE) is None
    assert wakes.announced("other", NEW, 100.5)  # each dataset has its own allowance
    assert wakeups.take(OTHER) == Wake(look=True)
    assert wakes.announced("models", NEW, 101.0)
    assert wakeups.take(STABLE) == Wake(look=True)


async def test_the_version_live_on_every_channel_or_an_unknown_dataset_wakes_nothing() -> None:
    channels = {sub: ChannelState(sub, live_manifest=NEW.hex()) for sub in (STABLE, BETA)}
    wakeups = Wakeups(channels)
    wakes = AnnounceWakes(wakeups, channels)
    assert not wakes.announced("models", NEW, 0.0)
    assert not wakes.announced("unsubscribed", NEW, 0.0)
    assert wakeups.take(STABLE) is None and wakeups.take(BETA) is None
    assert wakes.announced("models", OLD, 0.1)  # no allowance was spent on the two above
    assert wakeups.take(STABLE) == Wake(look=True) and wakeups.take(BETA) == Wake(look=True)


async def test_the_daemons_peer_exchange_wakes_loops_for_a_version_a_peer_announces(
    tmp_path: Path,
) -> None:
    config = build_config(
        {}, {"data_root": str(tmp_path), "subscribe": ["models:stable"]}, {}, tmp_path, "file:///x"
    )
    agent = Agent(config, Logger())
    assert agent.peers is not None
    access = DatasetAccess.from_dataset_key(bytes(32))
    agent.peers.accesses["models"] = access
    agent.peers._announced(access.access_id, NEW)
    assert agent.wakeups.take(STABLE) == Wake(look=True)
    # A version this agent fetches already is nothing to look for, nor an access id unknown.
    agent.peers.fetches[OLD] = {}
    assert agent.peers.wakes is not None
    agent.peers.wakes.every = 0.0  # so the allowance spent above hides nothing here
    agent.peers._announced(access.access_id, OLD)
    agent.peers._announced(DatasetAccess.from_dataset_key(bytes([1]) * 32).access_id, NEW)
    assert agent.wakeups.take(STABLE) is None
