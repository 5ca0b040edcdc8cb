"""Records over two in-memory connections: a manifest cut into RECORD chunks and put back
together, the dataset rule for record requests, and the size limits of protocol/peer.md."""

from __future__ import annotations

import os

import pytest

from aetherfs.core.ids import ManifestId
from aetherfs.protocol.connection import PeerConnection
from aetherfs.protocol.errors import RemoteProtocolError
from aetherfs.protocol.events import ConnectionClosed
from aetherfs.protocol.messages import (
    MAX_RECORD_CHUNK,
    Done,
    Reason,
    Record,
    RecordKind,
    RecordRequest,
    Reject,
    RejectReason,
)
from aetherfs.protocol.records import RecordAssembly, record_chunks
from tests.protocol.helpers import DATASET, connect
from tests.protocol.test_exchange import proved_pair

D = DATASET.access_id


def ask(client: PeerConnection, manifest_id: ManifestId) -> RecordRequest:
    message = RecordRequest(client.new_request_id(), RecordKind.MANIFEST, D, manifest_id.digest)
    client.send(message, 0.0)
    return message


def test_a_manifest_over_one_chunk_is_reassembled() -> None:
    pair = proved_pair()
    sealed = os.urandom(2 * MAX_RECORD_CHUNK + 1234)
    manifest_id = ManifestId.of(sealed)
    asked = ask(pair.client, manifest_id)
    _, server_events = pair.pump(0.0)
    assert server_events == [asked]
    chunks = list(record_chunks(asked.request_id, RecordKind.MANIFEST, D, asked.ref, sealed))
    assert len(chunks) == 3
    for chunk in chunks:
        pair.server.send(chunk, 0.0)
    pair.server.send(Done(asked.request_id), 0.0)
    client_events, _ = pair.pump(0.0)
    assert client_events[-1] == Done(asked.request_id)
    assembly = RecordAssembly(RecordKind.MANIFEST, D, asked.ref)
    results = [assembly.add(event) for event in client_events[:-1] if isinstance(event, Record)]
    assert results[:-1] == [None, None] and results[-1] == sealed
    assert ManifestId.of(results[-1]) == manifest_id


def test_a_peer_that_did_not_prove_the_dataset_is_refused() -> None:
    pair = connect(client_datasets=[DATASET], server_datasets=[DATASET])  # nothing proved
    asked = ask(pair.client, ManifestId(b"m" * 32))
    client_events, server_events = pair.pump(0.0)
    assert server_events == []  # the engine never sees it
    assert client_events == [Reject(asked.request_id, RejectReason.FORBIDDEN)]


def test_an_oversized_total_is_refused() -> None:
    ref = b"m" * 32
    assembly = RecordAssembly(RecordKind.MANIFEST, D, ref, limit=1000)
    with pytest.raises(RemoteProtocolError, match="over the limit"):
        assembly.add(Record(1, RecordKind.MANIFEST, D, ref, 0, 1001, b"x" * 10))
    # Past the protocol's own limit the message does not even decode: the connection ends.
    pair = proved_pair()
    pair.server.prove_access([DATASET], 0.0)
    pair.pump(0.0)
    asked = ask(pair.client, ManifestId(ref))
    pair.pump(0.0)
    big = Record(asked.request_id, RecordKind.MANIFEST, D, ref, 0, 2**28 + 1, b"x")
    pair.server.send(big, 0.0)
    client_events, _ = pair.pump(0.0)
    assert isinstance(client_events[-1], ConnectionClosed)
    assert client_events[-1].reason is Reason.PROTOCOL_ERROR and "total" in client_events[-1].text


def test_chunks_out_of_order_or_of_another_record_are_refused() -> None:
    ref = b"m" * 32
    assembly = RecordAssembly(RecordKind.MANIFEST, D, ref)
    assembly.add(Record(1, RecordKind.MANIFEST, D, ref, 0, 10, b"abcde"))
    with pytest.raises(RemoteProtocolError, match="offset"):
        assembly.add(Record(1, RecordKind.MANIFEST, D, ref, 6, 10, b"ghij"))
    with pytest.raises(RemoteProtocolError, match="total changed"):
        assembly.add(Record(1, RecordKind.MANIFEST, D, ref, 5, 11, b"fghij"))
    with pytest.raises(RemoteProtocolError, match="another record"):
        assembly.add(Record(1, RecordKind.MANIFEST, D, b"n" * 32, 5, 10, b"fghij"))
    assert assembly.add(Record(1, RecordKind.MANIFEST, D, ref, 5, 10, b"fghij")) == b"abcdefghij"
