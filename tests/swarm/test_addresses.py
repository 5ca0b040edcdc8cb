"""Where the engine's peers come from: static addresses, and a channel fed by discovery."""

from __future__ import annotations

import trio

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
