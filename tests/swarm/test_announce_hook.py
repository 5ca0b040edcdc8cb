"""The engine tells its owner of every version a peer announces (the agent wakes its channel
loops on it): an empty bitfield ("I want it") and the HAVEs that follow."""

from __future__ import annotations

import trio

from aetherfs.core.ids import ManifestId
from aetherfs.protocol.admission import AccessId
from aetherfs.swarm.memory import MemoryStore, synthetic_version
from tests.swarm.helpers import start_node, wait_for_peers


async def test_a_peer_starting_a_version_we_lack_is_told_to_the_hook_at_once() -> None:
    version = synthetic_version("announce", pieces=4)
    store = MemoryStore(version.packs)
    heard: list[tuple[AccessId, ManifestId]] = []
    async with trio.open_nursery() as nursery:
        listener = await start_node(
            nursery, store, version, on_announce=lambda a, m: heard.append((a, m))
        )
        fetcher = await start_node(nursery, store, version, peers=[listener.address])
        await wait_for_peers([listener, fetcher], version, 1)
        assert heard == []  # neither holds nor wants a version yet
        with trio.fail_after(10):
            await fetcher.engine.fetch(version.table, version.access.access_id)
            while len(heard) < 1 + len(version.table):
                await trio.sleep(0.01)
        # The empty bitfield first (the listener never had this version), then one HAVE a piece.
        assert set(heard) == {(version.access.access_id, version.table.id)}
        assert listener.engine.status().versions == ()
        nursery.cancel_scope.cancel()
