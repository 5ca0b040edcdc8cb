"""Data messages between two open connections: access proofs, announcements, requests and
blocks, cancels, records, and the rule for messages an older agent does not know."""

from __future__ import annotations

import msgpack
import pytest

from aetherfs.core.blocks import seal_block
from aetherfs.core.ids import ManifestId
from aetherfs.protocol.connection import MAX_OPEN_REQUESTS, State
from aetherfs.protocol.errors import LocalProtocolError
from aetherfs.protocol.events import AccessProved, ConnectionClosed
from aetherfs.protocol.messages import (
    MAY_IGNORE,
    Access,
    AccessProof,
    Bitfield,
    Block,
    Cancel,
    Done,
    Have,
    Reason,
    Record,
    RecordKind,
    RecordRequest,
    Reject,
    RejectReason,
    Request,
    encode_message,
)
from tests.protocol.helpers import DATASET, OTHER_DATASET, Pair, config, connect

MANIFEST = ManifestId(b"m" * 32)
D = DATASET.access_id


def sealed(n: int) -> list[Block]:
    blocks = [seal_block(bytes([i]) * 5000, b"c" * 32) for i in range(n)]
    return [Block(0, b.ref.id, b.stored) for b in blocks]


def proved_pair(**kw: object) -> Pair:
    """Client proves D to the server; both know D."""
    pair = connect(client_datasets=[DATASET], server_datasets=[DATASET], **kw)  # type: ignore[arg-type]
    pair.client.prove_access([DATASET], 0.0)
    _, server_events = pair.pump(0.0)
    assert server_events == [AccessProved(D)]
    return pair


def request(pair: Pair, **fields: object) -> Request:
    message = Request(pair.client.new_request_id(), D, MANIFEST, **fields)  # type: ignore[arg-type]
    pair.client.send(message, 0.0)
    return message


def test_access_proof_names_dataset_only_blinded() -> None:
    pair = connect(client_datasets=[DATASET, OTHER_DATASET], server_datasets=[DATASET])
    pair.client.prove_access([DATASET, OTHER_DATASET], 0.0)
    _, server_events = pair.pump(0.0)
    # The server learns only of the dataset it knows itself.
    assert server_events == [AccessProved(D)]
    # On the wire (inside the seal, too) a dataset is named by a per-session blinded id.
    body = encode_message(Access(()), pair.client._names)
    other = connect(client_datasets=[DATASET], server_datasets=[DATASET])
    assert D.blinded(pair.client.session_id) != D.blinded(other.client.session_id)
    assert D.key not in body and D.blinded(pair.client.session_id) not in body
    # A proof for a dataset learnt later is checked then.
    assert pair.server.add_dataset(OTHER_DATASET) == [AccessProved(OTHER_DATASET.access_id)]


def test_announcements_only_to_peers_that_proved_access() -> None:
    pair = connect(client_datasets=[DATASET], server_datasets=[DATASET])
    bits = Bitfield.of(D, MANIFEST, 10, [1, 9])
    with pytest.raises(LocalProtocolError, match="not proved"):
        pair.server.send(bits, 0.0)
    pair.client.prove_access([DATASET], 0.0)
    pair.pump(0.0)
    pair.server.send(bits, 0.0)
    pair.server.send(Have(D, MANIFEST, 2), 0.0)
    client_events, _ = pair.pump(0.0)
    assert client_events == [bits, Have(D, MANIFEST, 2)]
    assert client_events[0].held() == [1, 9]  # type: ignore[union-attr]


def test_piece_request_answered_by_blocks_then_done() -> None:
    pair = proved_pair()
    asked = request(pair, piece=3)
    _, server_events = pair.pump(0.0)
    assert server_events == [asked]
    for block in sealed(3):
        assert pair.server.send(Block(asked.request_id, block.block_id, block.data), 0.0)
    pair.server.send(Done(asked.request_id), 0.0)
    client_events, _ = pair.pump(0.0)
    assert [type(e) for e in client_events] == [Block, Block, Block, Done]
    assert [e.block_id for e in client_events[:3]] == [b.block_id for b in sealed(3)]  # type: ignore[union-attr]
    assert pair.client.open_requests == 0


@pytest.mark.parametrize("seal_blocks", [False, True])
def test_corrupt_block_ends_the_connection(seal_blocks: bool) -> None:
    pair = proved_pair(server_config=config(seal_blocks=seal_blocks))
    asked = request(pair, piece=0)
    pair.pump(0.0)
    block = sealed(1)[0]
    pair.server.send(Block(asked.request_id, block.block_id, block.data), 0.0)

    def flip_last_byte(frames: list[bytes]) -> list[bytes]:
        return [f[:-1] + bytes([f[-1] ^ 1]) for f in frames]

    client_events, _ = pair.pump(0.0, to_client=flip_last_byte)
    (end,) = client_events
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.PROTOCOL_ERROR
    assert ("corrupt" if not seal_blocks else "authentication") in end.text


def test_block_list_request_and_unasked_block() -> None:
    pair = proved_pair()
    wanted, unasked = sealed(2)
    asked = request(pair, blocks=(wanted.block_id,))
    pair.pump(0.0)
    pair.server.send(Block(asked.request_id, unasked.block_id, unasked.data), 0.0)
    client_events, _ = pair.pump(0.0)
    assert isinstance(client_events[-1], ConnectionClosed)
    assert "not asked for" in client_events[-1].text


def test_request_without_access_is_rejected_forbidden() -> None:
    pair = connect(client_datasets=[DATASET], server_datasets=[DATASET])
    asked = request(pair, piece=0)
    client_events, server_events = pair.pump(0.0)
    assert server_events == []
    assert client_events == [Reject(asked.request_id, RejectReason.FORBIDDEN)]


def test_cancel_and_a_late_block() -> None:
    pair = proved_pair()
    asked = request(pair, piece=0)
    pair.pump(0.0)
    block = sealed(1)[0]
    # The server sends a block while the client's cancel is on its way: the client drops it.
    pair.server.send(Block(asked.request_id, block.block_id, block.data), 0.0)
    pair.client.send(Cancel(asked.request_id), 0.0)
    client_events, server_events = pair.pump(0.0)
    assert client_events == [] and server_events == [Cancel(asked.request_id)]
    assert not pair.server.send(Block(asked.request_id, block.block_id, block.data), 0.0)
    assert not pair.server.send(Done(asked.request_id), 0.0)
    assert pair.client.state is State.OPEN


def test_answers_to_requests_never_sent_end_the_connection() -> None:
    pair = proved_pair()
    pair.server._incoming.add(7)  # the server believes it was asked: a buggy or hostile peer
    pair.server.send(Done(7), 0.0)
    client_events, _ = pair.pump(0.0)
    assert isinstance(client_events[-1], ConnectionClosed)
    assert "never sent" in client_events[-1].text


def test_open_request_limit() -> None:
    pair = proved_pair()
    for _ in range(MAX_OPEN_REQUESTS):
        request(pair, piece=0)
    with pytest.raises(LocalProtocolError, match="at most"):
        request(pair, piece=0)
    with pytest.raises(LocalProtocolError, match="new_request_id"):
        pair.client.send(Request(1, D, MANIFEST, piece=0), 0.0)


def test_records_pushed_and_revocations_asked() -> None:
    pair = proved_pair()
    # The server may push D's records to the client only once the client proved D.
    pair.server.prove_access([DATASET], 0.0)
    pair.pump(0.0)
    tag = Record(0, RecordKind.TAG_HISTORY, D, b"stable", 0, 3, b"abc")
    pair.client.send(tag, 0.0)
    _, server_events = pair.pump(0.0)
    assert server_events == [tag]
    ask = RecordRequest(pair.client.new_request_id(), RecordKind.MANIFEST, D, MANIFEST.digest)
    pair.client.send(ask, 0.0)
    _, server_events = pair.pump(0.0)
    assert server_events == [ask]
    chunk = Record(ask.request_id, RecordKind.MANIFEST, D, MANIFEST.digest, 0, 2, b"xy")
    pair.server.send(chunk, 0.0)
    pair.server.send(Done(ask.request_id), 0.0)
    client_events, _ = pair.pump(0.0)
    assert client_events == [chunk, Done(ask.request_id)]
    # A fleet admitted by secret holds no revocation list: asked, it says so.
    ask = RecordRequest(pair.client.new_request_id(), RecordKind.REVOCATIONS, None, b"")
    pair.client.send(ask, 0.0)
    client_events, _ = pair.pump(0.0)
    assert client_events == [Reject(ask.request_id, RejectReason.NOT_HAVE)]


def test_unknown_messages_skipped_when_marked_may_ignore() -> None:
    pair = proved_pair()
    pair.client._send_sealed(msgpack.packb([200, MAY_IGNORE, "new field"]), 0.0)
    pair.client._send_sealed(msgpack.packb([9 + 0, MAY_IGNORE]), 0.0)  # known type: too short
    _, server_events = pair.pump(0.0)
    assert isinstance(server_events[-1], ConnectionClosed)  # known types are never skipped
    pair = proved_pair()
    pair.client._send_sealed(msgpack.packb([200, MAY_IGNORE, "new field"]), 0.0)
    _, server_events = pair.pump(0.0)
    assert server_events == [] and pair.server.ignored == 1 and pair.server.state is State.OPEN
    pair.client._send_sealed(msgpack.packb([201, 0]), 0.0)
    _, server_events = pair.pump(0.0)
    (end,) = server_events
    assert isinstance(end, ConnectionClosed) and "upgrade" in end.text


def test_trailing_fields_from_newer_agents_are_ignored() -> None:
    pair = proved_pair()
    pair.client._send_sealed(msgpack.packb([4, 0, 77, "a field from version 9"]), 0.0)
    client_events, _ = pair.pump(0.0)
    assert pair.server.state is State.OPEN and client_events == []


def test_goodbye() -> None:
    pair = proved_pair()
    (end,) = pair.client.close(0.0, Reason.NORMAL, "shutting down")
    assert isinstance(end, ConnectionClosed) and not end.by_peer
    _, server_events = pair.pump(0.0)
    assert server_events == [ConnectionClosed(Reason.NORMAL, "shutting down", True)]
    with pytest.raises(LocalProtocolError):
        pair.client.send(Have(D, MANIFEST, 1), 0.0)


def test_a_keyless_relay_checks_proofs_with_the_access_id_alone() -> None:
    pair = connect(client_datasets=[DATASET], server_datasets=[D])
    pair.client.prove_access([DATASET], 0.0)
    _, server_events = pair.pump(0.0)
    assert server_events == [AccessProved(D)]
    # A forged proof (signed by another key under D's blinded name) ends the connection.
    forged = connect(client_datasets=[DATASET], server_datasets=[D])
    forged.client.prove_access([OTHER_DATASET], 0.0)  # learns OTHER, proves it: no match
    proof = forged.client._names.blind(D)
    body = encode_message(
        Access((AccessProof(proof, 1, OTHER_DATASET.prove(b"I", forged.client._transcript)),)),
        forged.client._names,
    )
    forged.client._send_sealed(body, 0.0)
    _, server_events = forged.pump(0.0)
    assert isinstance(server_events[-1], ConnectionClosed)
    assert "false" in server_events[-1].text


@pytest.mark.parametrize("seal_blocks", [False, True])
def test_blocks_arrive_whole_through_one_reused_read_buffer(seal_blocks: bool) -> None:
    # The transport reads into one buffer again and again: the connection must copy what it
    # keeps, whatever the reads cut, and hold no view of the buffer once receive_data returns.
    pair = proved_pair(server_config=config(seal_blocks=seal_blocks))
    asked = request(pair, piece=0)
    pair.pump(0.0)
    blocks = sealed(4)
    for block in blocks:
        pair.server.send(Block(asked.request_id, block.block_id, block.data), 0.0)
    pair.server.send(Done(asked.request_id), 0.0)
    wire = pair.server.data_to_send()
    buffer = bytearray(3001)
    events = []
    for at in range(0, len(wire), len(buffer)):
        n = len(wire[at : at + len(buffer)])
        buffer[:n] = wire[at : at + n]
        events += pair.client.receive_data(memoryview(buffer)[:n], 0.0)
        buffer[:] = bytes(len(buffer))  # the next read overwrites it
    assert [type(e) for e in events] == [Block] * 4 + [Done]
    assert [(e.block_id, e.data) for e in events[:4]] == [(b.block_id, b.data) for b in blocks]  # type: ignore[union-attr]
    assert all(type(e.data) is bytes for e in events[:4])  # type: ignore[union-attr]
