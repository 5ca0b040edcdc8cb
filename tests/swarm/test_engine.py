"""Engines trading a version over real TCP on loopback (trio, one process)."""

from __future__ import annotations

import trio

from aetherfs.swarm.memory import MemoryStore, synthetic_version
from tests.swarm.helpers import assert_holds_all, start_node, wait_for_peers


async def test_two_engines_one_holding_the_version_the_other_fetches_it_from_it() -> None:
    version = synthetic_version("two", pieces=12)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        seed = await start_node(nursery, store, version, holds=True)
        fetcher = await start_node(nursery, store, version, peers=[seed.address])
        await wait_for_peers([seed, fetcher], version, 1)
        with trio.fail_after(10):
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert counters.complete and counters.bytes_from_peers == version.table.total_size
        assert store.total_reads == 0
        assert_holds_all(fetcher, version)
        status = fetcher.engine.status()
        assert [p.state for p in status.peers] == ["open"]
        assert status.peers[0].bytes_received >= version.table.total_size
        nursery.cancel_scope.cancel()
