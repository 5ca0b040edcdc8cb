"""The trio transport: a thin loop around PeerConnection over real loopback sockets."""

from __future__ import annotations

import os

import trio
from nacl.signing import SigningKey

from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.net.transport import PeerAddress, PeerLink, dial, peer_address
from aetherfs.protocol.admission import DatasetAccess, FleetSecret
from aetherfs.protocol.connection import PeerConfig, PeerConnection
from aetherfs.protocol.events import AccessProved, ConnectionClosed, Established, Event
from aetherfs.protocol.messages import Block, Done, Reason, Request
from aetherfs.swarm.memory import MemoryStore, synthetic_version
from tests.swarm.helpers import start_node, wait_for_peers

FLEET = FleetSecret(bytes(range(32)))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = trio.Event()

    def __call__(self, link: PeerLink, events: list[Event]) -> None:
        self.events.extend(events)
        if any(isinstance(e, ConnectionClosed) for e in events):
            self.closed.set()

    def closes(self) -> list[ConnectionClosed]:
        return [e for e in self.events if isinstance(e, ConnectionClosed)]


def connection(
    initiator: bool, datasets: tuple[DatasetAccess, ...] = (), **timers: float
) -> PeerConnection:
    return PeerConnection(PeerConfig(SigningKey.generate(), FLEET, **timers), initiator, datasets)


async def serve_one(
    nursery: trio.Nursery,
    recorder: Recorder,
    datasets: tuple[DatasetAccess, ...] = (),
    **timers: float,
) -> tuple[PeerAddress, list[PeerLink]]:
    """A listener that runs one PeerLink per connection it accepts."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    links: list[PeerLink] = []

    async def handler(stream: trio.SocketStream) -> None:
        conn = connection(False, datasets, **timers)
        link = PeerLink(stream, conn, peer_address(stream), recorder)
        links.append(link)
        await link.run()

    nursery.start_soon(trio.serve_listeners, handler, [listener])
    return PeerAddress("127.0.0.1", listener.socket.getsockname()[1]), links


async def test_a_silent_client_is_closed_by_the_handshake_timeout() -> None:
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        address, links = await serve_one(nursery, recorder, handshake_timeout=0.3)
        raw = await dial(address)
        started = trio.current_time()
        with trio.fail_after(3):
            while await raw.receive_some(65536):
                pass  # the server's Hello, then the end of the stream
        took = trio.current_time() - started
        assert 0.25 <= took < 1.5
        [closed] = recorder.closes()
        assert closed.reason is Reason.HANDSHAKE_TIMEOUT
        assert links[0].done.is_set()
        nursery.cancel_scope.cancel()


async def test_a_timer_that_comes_earlier_wakes_the_ticker() -> None:
    # The ticker is woken only when a timer comes earlier than the one it sleeps until: a
    # request opens the progress timer (0.5 s), well before the keepalive (3 s) it sleeps on.
    server, client = Recorder(), Recorder()
    dataset = DatasetAccess.from_dataset_key(b"d" * 32)
    async with trio.open_nursery() as nursery:
        address, _links = await serve_one(nursery, server, (dataset,))
        conn = connection(True, (dataset,), progress_timeout=0.5)
        link = PeerLink(await dial(address), conn, address, client)
        nursery.start_soon(link.run)
        with trio.fail_after(3):
            while not any(isinstance(e, Established) for e in client.events):
                await trio.sleep(0.01)
            conn.prove_access([dataset], trio.current_time())
            link.poke()
            while not any(isinstance(e, AccessProved) for e in server.events):
                await trio.sleep(0.01)
        await trio.sleep(0.2)  # the ticker is asleep on the keepalive by now
        asked = Request(conn.new_request_id(), dataset.access_id, ManifestId(b"m" * 32), piece=0)
        assert link.send(asked)  # the server's engine (a recorder) never answers it
        started = trio.current_time()
        with trio.fail_after(3):
            await client.closed.wait()
        assert trio.current_time() - started < 1.5
        [closed] = client.closes()
        assert closed.reason is Reason.NO_PROGRESS
        nursery.cancel_scope.cancel()


async def test_two_links_handshake_and_a_peer_closing_is_reported_once_as_lost() -> None:
    server, client = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        address, links = await serve_one(nursery, server)
        link = PeerLink(await dial(address), connection(True), address, client)
        nursery.start_soon(link.run)
        with trio.fail_after(3):
            while not any(isinstance(e, Established) for e in server.events):
                await trio.sleep(0.01)
            while not any(isinstance(e, Established) for e in client.events):
                await trio.sleep(0.01)
        assert link.bytes_sent > 0 and link.bytes_received > 0
        await links[0].stream.aclose()  # the server's socket goes away without a goodbye
        with trio.fail_after(3):
            await client.closed.wait()
            await link.done.wait()
        [closed] = client.closes()
        assert closed.reason is Reason.CONNECTION_LOST and closed.by_peer
        nursery.cancel_scope.cancel()


async def test_a_goodbye_is_sent_before_the_socket_closes() -> None:
    server, client = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        address, _links = await serve_one(nursery, server)
        link = PeerLink(await dial(address), connection(True), address, client)
        nursery.start_soon(link.run)
        with trio.fail_after(3):
            while not any(isinstance(e, Established) for e in client.events):
                await trio.sleep(0.01)
        link.close(Reason.NORMAL, "bye")
        with trio.fail_after(3):
            await server.closed.wait()
        [closed] = server.closes()
        assert closed.reason is Reason.NORMAL and closed.by_peer and closed.text == "bye"
        nursery.cancel_scope.cancel()


async def test_two_engines_dialling_each_other_keep_one_connection() -> None:
    version = synthetic_version("pair", pieces=4)
    store = MemoryStore(version.packs)
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, store, version)
        b = await start_node(nursery, store, version, peers=[a.address])
        a.engine.dial(b.address)
        await wait_for_peers([a, b], version, 1)
        await trio.sleep(1.0)  # both diallers had their chance to dial again
        for node in (a, b):
            status = node.engine.status()
            assert status.connections == 1
            assert [p.state for p in status.peers] == ["open"]
        nursery.cancel_scope.cancel()


async def _handshake(raw: trio.SocketStream, conn: PeerConnection, until: type[Event]) -> None:
    """Pump a sans-I/O connection over a raw stream until it reports `until`."""
    seen: list[Event] = []
    while not any(isinstance(e, until) for e in seen):
        await raw.send_all(conn.data_to_send())
        seen += conn.receive_data(await raw.receive_some(65536), trio.current_time())
    await raw.send_all(conn.data_to_send())


async def _raw_peer(
    address: PeerAddress, dataset: DatasetAccess, server: Recorder
) -> tuple[trio.SocketStream, PeerConnection]:
    """A sans-I/O connection over a raw stream to the server, open and proved to it."""
    raw = await dial(address)
    peer = connection(True, (dataset,))
    peer.start(trio.current_time())
    await _handshake(raw, peer, Established)
    peer.prove_access([dataset], trio.current_time())
    await raw.send_all(peer.data_to_send())
    while not any(isinstance(e, AccessProved) for e in server.events):
        await trio.sleep(0.01)
    return raw, peer


async def test_a_block_that_trickles_in_is_read_whole_then_what_follows_at_once() -> None:
    # A block frame arriving a segment at a time (a link slower than the reader) wakes the
    # link about once, not once per segment (SO_RCVLOWAT: what the frame still lacks); a
    # small message after it, below any mark, still arrives at once.
    server = Recorder()
    dataset = DatasetAccess.from_dataset_key(b"d" * 32)
    data = bytes(range(256)) * 800  # 200 KiB
    async with trio.open_nursery() as nursery:
        address, links = await serve_one(nursery, server, (dataset,))
        with trio.fail_after(5):
            raw, peer = await _raw_peer(address, dataset, server)
            [link] = links
            link.conn.prove_access([dataset], trio.current_time())
            manifest = ManifestId(b"m" * 32)
            asked = Request(link.conn.new_request_id(), dataset.access_id, manifest, piece=0)
            assert link.send(asked)
            while not any(
                isinstance(e, Request)
                for e in peer.receive_data(await raw.receive_some(65536), trio.current_time())
            ):
                pass
        peer.send(Block(asked.request_id, BlockId.of(data), data), trio.current_time())
        frame = peer.data_to_send()
        reads = link.reads
        for at in range(0, len(frame), 4096):
            await raw.send_all(frame[at : at + 4096])
            await trio.sleep(0.002)
        with trio.fail_after(3):
            while not any(isinstance(e, Block) for e in server.events):
                await trio.sleep(0.01)
        [block] = [e for e in server.events if isinstance(e, Block)]
        assert block.data == data
        assert link.reads - reads <= 4  # 50 segments
        peer.send(Done(asked.request_id), trio.current_time())
        await raw.send_all(peer.data_to_send())
        with trio.fail_after(1):
            while not any(isinstance(e, Done) for e in server.events):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_blocks_queued_faster_than_the_peer_reads_arrive_whole_and_in_order() -> None:
    # The writer hands the connection's buffers (a block's own bytes among them) to gathered
    # writes; a peer that reads nothing for a while leaves writes half done, and an uploader
    # waiting for room (`flushed(ahead)`) waits until the peer has read enough.
    server = Recorder()
    dataset = DatasetAccess.from_dataset_key(b"d" * 32)
    blocks = [bytes([i]) * 1000 + os.urandom(199_000) for i in range(20)]  # 4 MB
    async with trio.open_nursery() as nursery:
        address, links = await serve_one(nursery, server, (dataset,))
        with trio.fail_after(5):
            raw, peer = await _raw_peer(address, dataset, server)
            asked = Request(peer.new_request_id(), dataset.access_id, ManifestId(b"m" * 32), 0)
            peer.send(asked, trio.current_time())
            await raw.send_all(peer.data_to_send())
            while not any(isinstance(e, Request) for e in server.events):
                await trio.sleep(0.01)
        [link] = links
        for data in blocks:
            assert link.send(Block(asked.request_id, BlockId.of(data), data))
        room = trio.Event()

        async def upload_waits() -> None:
            await link.flushed(256 * 1024)
            room.set()

        nursery.start_soon(upload_waits)
        await trio.sleep(0.3)
        assert not room.is_set()  # the peer has read nothing: 4 MB cannot all be written
        got: list[bytes] = []
        with trio.fail_after(5):
            while len(got) < len(blocks):
                events = peer.receive_data(await raw.receive_some(1 << 20), trio.current_time())
                got += [bytes(e.data) for e in events if isinstance(e, Block)]
            await room.wait()
        assert got == blocks
        assert link.bytes_sent >= sum(map(len, blocks))
        nursery.cancel_scope.cancel()
