"""Sealed manifests asked of peers over real TCP on loopback: chunked, one peer at a time,
and a false copy caught by the caller, which then reads the store."""

from __future__ import annotations

import os

import trio

from aetherfs.agent.manifests import manifest_from_peers
from aetherfs.core.ids import ManifestId
from aetherfs.errors import IntegrityError
from aetherfs.protocol.admission import AccessId
from aetherfs.protocol.messages import MAX_RECORD_CHUNK
from aetherfs.swarm.interfaces import PeerRecord
from aetherfs.swarm.memory import MemoryStore, synthetic_version
from tests.swarm.helpers import start_node, wait_for_peers


class MemoryRecords:
    """Sealed manifests by id, served for one dataset; counts what it was asked."""

    def __init__(self, dataset: AccessId, manifests: dict[ManifestId, bytes]) -> None:
        self.dataset, self.manifests, self.asked = dataset, manifests, 0

    def sealed_manifest(self, dataset: AccessId, manifest_id: ManifestId) -> bytes | None:
        self.asked += 1
        return self.manifests.get(manifest_id) if dataset == self.dataset else None


async def test_a_manifest_is_fetched_from_the_peer_that_holds_it() -> None:
    version = synthetic_version("manifests", pieces=2)
    store = MemoryStore(version.packs)
    dataset = version.access.access_id
    sealed = os.urandom(3 * MAX_RECORD_CHUNK + 17)  # four RECORD chunks
    manifest_id = ManifestId.of(sealed)
    async with trio.open_nursery() as nursery:
        empty = MemoryRecords(dataset, {})
        holder = MemoryRecords(dataset, {manifest_id: sealed})
        a = await start_node(nursery, store, version, records=empty, name="a")
        b = await start_node(nursery, store, version, records=holder, name="b")
        asker = await start_node(nursery, store, version, peers=[a.address, b.address])
        await wait_for_peers([asker], version, 2)
        with trio.fail_after(10):
            got = await asker.engine.fetch_manifest(dataset, manifest_id, 5.0)
        assert got is not None and got.data == sealed and got.peer == b.engine.self_id
        assert holder.asked == 1
        # Held nowhere: every peer says so, and the answer is None by the deadline.
        with trio.fail_after(4):
            assert await asker.engine.fetch_manifest(dataset, ManifestId(b"x" * 32), 1.0) is None
        nursery.cancel_scope.cancel()


async def test_a_false_copy_is_caught_by_the_caller_and_the_store_read() -> None:
    version = synthetic_version("false", pieces=2)
    store = MemoryStore(version.packs)
    dataset = version.access.access_id
    sealed = os.urandom(MAX_RECORD_CHUNK + 5)
    manifest_id = ManifestId.of(sealed)
    altered = bytes([sealed[0] ^ 1]) + sealed[1:]
    store_reads: list[ManifestId] = []
    refused: list[str] = []

    async def verify(data: bytes) -> None:
        if ManifestId.of(data) != manifest_id:
            raise IntegrityError("the bytes sent do not hash to the manifest")

    async with trio.open_nursery() as nursery:
        liar = await start_node(
            nursery, store, version, records=MemoryRecords(dataset, {manifest_id: altered})
        )
        asker = await start_node(nursery, store, version, peers=[liar.address])
        await wait_for_peers([asker], version, 1)
        with trio.fail_after(10):
            got = await manifest_from_peers(
                asker.engine, dataset, manifest_id, verify, refused.append, 5.0
            )
        if got is None:  # what the agent does next: the store's copy
            store_reads.append(manifest_id)
        assert got is None and store_reads == [manifest_id]
        assert len(refused) == 1 and "is false" in refused[0]
        (peer,) = asker.engine.status().peers
        assert peer.errors == 1 and "is false" in (peer.last_error or "")
        nursery.cancel_scope.cancel()


async def test_one_agent_reads_the_store_and_the_others_wait_for_its_announcement() -> None:
    version = synthetic_version("owner", pieces=2)
    store = MemoryStore(version.packs)
    dataset = version.access.access_id
    manifest_id = version.table.id  # the engine carries any bytes: the caller checks them
    sealed = os.urandom(MAX_RECORD_CHUNK // 2)
    async with trio.open_nursery() as nursery:
        records = [MemoryRecords(dataset, {}), MemoryRecords(dataset, {})]
        first = await start_node(nursery, store, version, records=records[0])
        second = await start_node(
            nursery, store, version, records=records[1], peers=[first.address]
        )
        nodes = [first, second]
        await wait_for_peers(nodes, version, 1)
        owners = {n.engine._manifest_owner(dataset, manifest_id) for n in nodes}
        assert len(owners) == 1  # both agents name the same one
        owner = next(i for i, n in enumerate(nodes) if n.engine.self_id in owners)
        waiter = nodes[1 - owner]
        got: list[object] = []

        async def wait_for_it() -> None:
            got.append(await waiter.engine.fetch_manifest(dataset, manifest_id, 10.0))

        nursery.start_soon(wait_for_it)
        started = trio.current_time()
        with trio.fail_after(5):
            mine = await nodes[owner].engine.fetch_manifest(dataset, manifest_id, 10.0)
        assert mine is None and trio.current_time() - started < 2.0  # its to read: no wait
        assert not got  # the other waits, rather than reading the store too
        # The owner "reads the store", holds the manifest, and announces the version.
        records[owner].manifests[manifest_id] = sealed
        await nodes[owner].engine.offer(version.table, dataset)
        with trio.fail_after(5):
            while not got:
                await trio.sleep(0.02)
        (record,) = got
        assert isinstance(record, PeerRecord) and record.data == sealed
        assert record.peer == nodes[owner].engine.self_id
        nursery.cancel_scope.cancel()


async def test_without_a_record_source_peers_answer_not_have() -> None:
    version = synthetic_version("none", pieces=2)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        plain = await start_node(nursery, store, version)
        asker = await start_node(nursery, store, version, peers=[plain.address])
        await wait_for_peers([asker], version, 1)
        with trio.fail_after(8):  # NOT_HAVE at once; then, if not ours to read, the deadline
            got = await asker.engine.fetch_manifest(
                version.access.access_id, ManifestId(b"m" * 32), 3.0
            )
        assert got is None
        nursery.cancel_scope.cancel()
