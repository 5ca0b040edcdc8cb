"""Engines trading a version over real TCP on loopback (trio, one process)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import trio
from nacl.signing import SigningKey

from aetherfs.core.ids import BlockId
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import Bitfield, PlannerConfig
from aetherfs.protocol.admission import FleetSecret
from aetherfs.protocol.connection import PeerConfig, PeerConnection
from aetherfs.protocol.events import AccessProved, Established
from aetherfs.protocol.messages import Bitfield as BitfieldMessage
from aetherfs.swarm.memory import (
    MemoryBlocks,
    MemoryStore,
    NoStore,
    SyntheticVersion,
    synthetic_version,
)
from tests.swarm.helpers import FLEET, Node, assert_holds_all, start_node, wait_for_peers


async def test_two_engines_one_holding_the_version_the_other_fetches_it_from_it() -> None:
    version = synthetic_version("two", pieces=12)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        seed = await start_node(nursery, store, version, holds=True)
        fetcher = await start_node(nursery, store, version, peers=[seed.address])
        await wait_for_peers([seed, fetcher], version, 1)
        with trio.fail_after(30):
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert counters.complete and counters.bytes_from_peers == version.table.total_size
        assert store.total_reads == 0
        assert_holds_all(fetcher, version)
        status = fetcher.engine.status()
        assert [p.state for p in status.peers] == ["open"]
        assert status.peers[0].bytes_received >= version.table.total_size
        nursery.cancel_scope.cancel()


async def fetch_all(nodes: list[Node], version: SyntheticVersion, timeout: float = 20) -> None:
    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(node.engine.fetch, version.table, version.access.access_id)
    for node in nodes:
        assert node.engine.status().versions[0].complete


async def mesh(
    nursery: trio.Nursery, store: MemoryStore, version: SyntheticVersion, count: int
) -> list[Node]:
    nodes: list[Node] = []
    for i in range(count):
        nodes.append(
            await start_node(
                nursery, store, version, peers=[n.address for n in nodes], name=f"agent-{i}"
            )
        )
    await wait_for_peers(nodes, version, count - 1)
    return nodes


async def test_three_engines_read_each_piece_from_the_store_about_once() -> None:
    version = synthetic_version("three", pieces=48)
    store = MemoryStore(version.packs, delay=0.005)
    async with trio.open_nursery() as nursery:
        nodes = await mesh(nursery, store, version, 3)
        with trio.fail_after(60):
            await fetch_all(nodes, version)
        for node in nodes:
            assert_holds_all(node, version)
        assert max(store.reads.values()) <= 2
        assert store.total_reads <= len(version.table) * 1.1
        from_peers = sum(n.engine.status().versions[0].bytes_from_peers for n in nodes)
        assert from_peers >= version.table.total_size  # most of it crossed between peers
        nursery.cancel_scope.cancel()


async def test_an_engine_killed_mid_transfer_leaves_the_others_to_finish() -> None:
    version = synthetic_version("killed", pieces=48)
    store = MemoryStore(version.packs, delay=0.08)
    async with trio.open_nursery() as nursery:
        nodes = await mesh(nursery, store, version, 3)
        victim = nodes[2]
        nursery.start_soon(victim.engine.fetch, version.table, version.access.access_id)
        await trio.sleep(0.12)  # its first store reads are in, the rest not yet
        assert not victim.engine.status().versions[0].complete
        victim.scope.cancel()
        with trio.fail_after(60):
            await fetch_all(nodes[:2], version)
        for node in nodes[:2]:
            assert_holds_all(node, version)
            assert victim.engine.self_id not in node.engine.connected()
        assert store.total_reads <= len(version.table) * 1.5
        nursery.cancel_scope.cancel()


class CorruptBlocks(MemoryBlocks):
    """A peer whose disk (or intent) flips a byte of what it serves."""

    def read(self, block_ids: Sequence[BlockId]) -> list[bytes]:
        data = super().read(block_ids)
        first = bytearray(data[0])
        first[len(first) // 2] ^= 0x01
        return [bytes(first), *data[1:]]


async def test_a_peer_sending_corrupt_blocks_is_dropped_and_the_version_completes() -> None:
    version = synthetic_version("corrupt", pieces=16)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        liar = await start_node(
            nursery, store, version, holds=True, blocks=CorruptBlocks(version.stored)
        )
        fetcher = await start_node(nursery, store, version, peers=[liar.address])
        await wait_for_peers([liar, fetcher], version, 1)
        with trio.fail_after(30):
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert counters.complete and counters.bytes_from_peers == 0
        assert_holds_all(fetcher, version)
        [peer] = fetcher.engine.status().peers
        assert peer.peer == liar.engine.self_id
        assert peer.state == "banned" and peer.errors >= 1
        assert fetcher.engine.planner.status().banned == (liar.engine.self_id,)
        with trio.fail_after(15):  # dialled again, it is dropped again at once
            while fetcher.engine.status().peers[0].errors < 2:
                await trio.sleep(0.01)
        assert fetcher.engine.connected() == []
        assert fetcher.engine.status().peers[0].state == "banned"
        nursery.cancel_scope.cancel()


async def test_malformed_frames_from_a_raw_socket_end_that_connection_only() -> None:
    version = synthetic_version("raw", pieces=8)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        seed = await start_node(nursery, store, version, holds=True)
        for garbage in (
            b"\xff\xff\xff\xff\x01",  # a length over the limit
            b"\x00\x00\x00\x04\x09abcd",  # an unknown frame kind
            b"\x00\x00\x00\x04\x00\x93\x01\x02\x03",  # a Hello that is not one
            b"GET / HTTP/1.1\r\n\r\n",
        ):
            raw = await trio.open_tcp_stream("127.0.0.1", seed.engine.port)
            await raw.send_all(garbage)
            with trio.fail_after(15):
                while await raw.receive_some(65536):
                    pass  # its Hello, maybe a goodbye, then the end of the stream
            await raw.aclose()
        assert {r.reason for r in seed.engine.status().refused} == {"protocol_error"}
        fetcher = await start_node(nursery, store, version, peers=[seed.address])
        with trio.fail_after(30):
            await wait_for_peers([seed, fetcher], version, 1)
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert counters.bytes_from_peers == version.table.total_size
        nursery.cancel_scope.cancel()


async def test_an_engine_with_another_fleet_secret_is_refused() -> None:
    version = synthetic_version("fleet", pieces=8)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        seed = await start_node(nursery, store, version, holds=True)
        stranger = await start_node(
            nursery, store, version, peers=[seed.address], fleet=FleetSecret(b"x" * 32)
        )
        with trio.fail_after(15):
            while not stranger.engine.status().refused:
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        assert seed.engine.connected() == [] and stranger.engine.connected() == []
        assert {r.reason for r in seed.engine.status().refused} == {"not_admitted"}
        assert seed.engine.status().peers == ()
        nursery.cancel_scope.cancel()


class SlowBlocks(MemoryBlocks):
    """A peer that serves, but far slower than its deadlines allow."""

    def read(self, block_ids: Sequence[BlockId]) -> list[bytes]:
        time.sleep(0.6)
        return super().read(block_ids)


async def test_a_slow_peer_loses_its_pieces_to_the_store() -> None:
    version = synthetic_version("slow", pieces=16)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        slow = await start_node(
            nursery, store, version, holds=True, blocks=SlowBlocks(version.stored)
        )
        fetcher = await start_node(nursery, store, version, peers=[slow.address])
        await wait_for_peers([slow, fetcher], version, 1)
        started = trio.current_time()
        with trio.fail_after(30):
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert trio.current_time() - started < 2.0  # one missed deadline, then the store
        assert counters.store_reads >= len(version.table) - 4
        assert fetcher.engine.planner.status().peers[0].misses >= 1
        assert_holds_all(fetcher, version)
        nursery.cancel_scope.cancel()


async def test_the_upload_cap_paces_what_a_peer_serves() -> None:
    version = synthetic_version("capped", pieces=16)  # 1 MiB in 16 pieces
    rate = 400_000.0
    async with trio.open_nursery() as nursery:
        seed = await start_node(nursery, NoStore(), version, holds=True, upload_cap=rate)
        patient = PlannerConfig(peer_timeout=10.0, peer_min_rate=100_000.0)
        fetcher = await start_node(
            nursery, NoStore(), version, peers=[seed.address], planner=patient
        )
        await wait_for_peers([seed, fetcher], version, 1)
        started = trio.current_time()
        with trio.fail_after(30):
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        took = trio.current_time() - started
        total, piece = version.table.total_size, version.table.size(0)
        # At most a second's burst, then the rate, plus the piece that went into debt.
        assert took >= (total - rate - piece) / rate * 0.9
        assert counters.bytes_from_peers == total
        nursery.cancel_scope.cancel()


async def silent_peer(address: PeerAddress, version: SyntheticVersion, proved: trio.Event) -> None:
    """A peer that completes the handshake, announces the whole version, then goes silent
    with its socket open (a host that froze): it answers nothing, not even a ping."""
    stream = await trio.open_tcp_stream(address.host, address.port)
    # It knows the dataset from the start: a proof that arrives in the same read as the
    # handshake's end is then checked at once, not kept for a later `add_dataset`.
    config = PeerConfig(SigningKey.generate(), FLEET, agent="frozen")
    conn = PeerConnection(config, True, [version.access])
    conn.start(trio.current_time())
    await stream.send_all(conn.data_to_send())
    while not proved.is_set():
        data = await stream.receive_some(65536)
        if not data:
            raise AssertionError("the fetcher closed the connection before the proofs were done")
        for event in conn.receive_data(data, trio.current_time()):
            if isinstance(event, Established):
                conn.prove_access([version.access], trio.current_time())
            elif isinstance(event, AccessProved):
                count = len(version.table)
                bits = Bitfield.full(count).to_bytes()
                conn.send(BitfieldMessage(event.dataset, version.table.id, count, bits), 0.0)
                proved.set()
        await stream.send_all(conn.data_to_send())
    await trio.sleep_forever()


async def test_a_peer_that_goes_silent_is_noticed_and_its_pieces_come_from_the_store() -> None:
    version = synthetic_version("frozen", pieces=16)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        # An idle timeout of a few seconds: short enough for the test, long enough that a busy
        # runner finishes the handshake and the proofs within it.
        fetcher = await start_node(
            nursery, store, version, idle_timeout=3.0, keepalive_interval=1.0
        )
        proved = trio.Event()
        nursery.start_soon(silent_peer, fetcher.address, version, proved)
        with trio.fail_after(15):
            await proved.wait()
            while not fetcher.engine.announced(version.table.id):
                await trio.sleep(0.01)
        with trio.fail_after(30):
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert counters.complete and counters.bytes_from_peers == 0
        assert_holds_all(fetcher, version)
        with trio.fail_after(15):  # the idle timeout: nothing received for three seconds
            while fetcher.engine.connected():
                await trio.sleep(0.05)
        [peer] = fetcher.engine.status().peers
        assert peer.state == "gone" and peer.last_error == "nothing received from the peer"
        nursery.cancel_scope.cancel()
