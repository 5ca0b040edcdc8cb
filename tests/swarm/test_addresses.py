"""Where the engine's peers come from: static addresses, and a channel fed by discovery."""

from __future__ import annotations

import pytest
import trio

from aetherfs.errors import InvalidInput
from aetherfs.swarm import AddressGone
from aetherfs.swarm.interfaces import AddressEvent
from aetherfs.swarm.memory import MemoryStore, synthetic_version
from tests.swarm.helpers import start_node, wait_for_peers


async def test_addresses_from_discovery_are_dialled_until_they_are_gone() -> None:
    version = synthetic_version("found", pieces=4)
    store = MemoryStore(version.packs)
    send, receive = trio.open_memory_channel[AddressEvent](8)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, store, version, holds=True)
        b = await start_node(nursery, store, version, addresses=receive)
        await send.send(a.address)
        await wait_for_peers([a, b], version, 1)
        # A restarts on the same port: B dials it again, as a static peer would be.
        port = a.engine.port
        a.scope.cancel()
        a = await start_node(nursery, store, version, holds=True, port=port)
        await wait_for_peers([a, b], version, 1)
        # Discovery says A is gone: once its connection ends, B does not dial it again.
        await send.send(AddressGone(a.address))
        await trio.sleep(0.05)
        a.scope.cancel()
        a = await start_node(nursery, store, version, holds=True, port=port)
        await trio.sleep(1.0)  # five of B's redial periods
        assert b.engine.connected() == [] and a.engine.connected() == []
        nursery.cancel_scope.cancel()


async def test_an_engine_that_dials_itself_stops() -> None:
    version = synthetic_version("self", pieces=4)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, store, version)
        a.engine.dial(a.address)
        await trio.sleep(1.0)  # five redial periods
        status = a.engine.status()
        assert status.connections == 0 and status.peers == ()
        assert [r.text for r in status.refused] == ["this is the same agent"] * 2  # both ends
        nursery.cancel_scope.cancel()


async def test_a_dataset_learnt_later_is_proved_both_ways_and_fetched_from_peers() -> None:
    version = synthetic_version("later", pieces=8)
    store = MemoryStore(version.packs)
    dataset = version.access.access_id
    async with trio.open_nursery() as nursery:
        seed = await start_node(nursery, store, version, holds=True)
        late = await start_node(nursery, store, version, peers=[seed.address], knows_dataset=False)
        with trio.fail_after(5):
            while not late.engine.connected():
                await trio.sleep(0.01)
        with pytest.raises(InvalidInput):
            await late.engine.fetch(version.table, dataset)
        late.engine.add_dataset(version.access)
        # The seed's proof came before the late one knew the dataset: it is checked now.
        await wait_for_peers([seed, late], version, 1)
        counters = await late.engine.fetch(version.table, dataset)
        assert counters.bytes_from_peers == version.table.total_size
        assert store.total_reads == 0
        nursery.cancel_scope.cancel()
