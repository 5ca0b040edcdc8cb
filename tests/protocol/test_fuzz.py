"""Hypothesis fuzz of the frame decoder and of an open connection's receive path: whatever
arrives, the outcome is events (at most one ConnectionClosed, with a RemoteProtocolError if
the peer broke the protocol), never another exception."""

from __future__ import annotations

import contextlib
from itertools import pairwise
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aetherfs.protocol.errors import RemoteProtocolError
from aetherfs.protocol.events import ConnectionClosed
from aetherfs.protocol.frames import PREFIX, FrameBuffer, FrameCipher, FrameKind
from aetherfs.protocol.messages import decode_message
from tests.protocol.helpers import DATASET, connect

BLINDED_D = "<blinded D>"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

wire_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.sampled_from([bytes(16), bytes(32), bytes(64), DATASET.access_id.key])
    | st.text(max_size=20)
    | st.just(BLINDED_D),
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)
messages = st.builds(
    lambda t, f, rest: [t, f, *rest],
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=3),
    st.lists(wire_values, max_size=9),
)


def with_blinded(value: Any, blinded: bytes) -> Any:
    """Put this session's blinded id of D where the strategy left its marker."""
    if value == BLINDED_D:
        return blinded
    if isinstance(value, list):
        return [with_blinded(v, blinded) for v in value]
    return value


def check(events: list[object]) -> None:
    closes = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(closes) <= 1
    if closes and closes[0].error is not None:
        assert isinstance(closes[0].error, RemoteProtocolError)


@FUZZ
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_frame_decoder(data: bytes, step: int) -> None:
    buffer, cipher = FrameBuffer(), FrameCipher(b"k" * 32)
    try:
        for i in range(0, len(data), step):
            buffer.feed(data[i : i + step])
            while (frame := buffer.next_frame()) is not None:
                if frame.kind in (FrameKind.BLOCK, FrameKind.SEALED_BLOCK):
                    cipher.open_block(frame)
                else:
                    cipher.open(frame.body, frame.prefix)
    except RemoteProtocolError:
        pass


@FUZZ
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_frames_survive_any_cut_of_the_stream(bodies: list[bytes], cuts: list[int]) -> None:
    # Whole frames are views, split ones are gathered: every cut gives back the same frames,
    # and the buffer keeps no view of a chunk once it has returned None (each is overwritten).
    # Between chunks it says how many bytes its frame still lacks once that frame's prefix is
    # in (what the transport waits for), and 0 when it cannot know.
    wire = b"".join(PREFIX.pack(len(b), FrameKind.SEALED) + b for b in bodies)
    starts = [0]
    for body in bodies:
        starts.append(starts[-1] + PREFIX.size + len(body))
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    buffer, got = FrameBuffer(), []
    for start, end in pairwise(points):
        chunk = bytearray(wire[start:end])
        buffer.feed(chunk)
        while (frame := buffer.next_frame()) is not None:
            got.append(bytes(frame.body))
        chunk[:] = bytes(len(chunk))
        begun = max(s for s in starts if s <= end)
        whole = next((s for s in starts if s > end), begun)
        lacking = whole - end if end - begun >= PREFIX.size else 0
        assert buffer.missing() == lacking
    assert got == bodies and buffer.pending() == 0


@FUZZ
@given(messages, st.integers(min_value=1, max_value=2))
def test_message_decoder(doc: list[Any], version: int) -> None:
    pair = connect()
    with contextlib.suppress(RemoteProtocolError):
        decode_message(msgpack.packb(doc, use_bin_type=True), version, pair.client._names)


@FUZZ
@given(st.binary(max_size=400))
def test_open_connection_raw_bytes(data: bytes) -> None:
    pair = connect(client_datasets=[DATASET], server_datasets=[DATASET])
    check(pair.server.receive_data(data, 1.0) + pair.server.receive_data(b"", 2.0))


@FUZZ
@given(st.lists(messages, min_size=1, max_size=6), st.booleans())
def test_open_connection_authentic_frames_with_fuzzed_messages(
    docs: list[list[Any]], prove: bool
) -> None:
    """Frames sealed with the right key, so the fuzz reaches message decoding and the state
    machine, not just the authentication check."""
    pair = connect(client_datasets=[DATASET], server_datasets=[DATASET])
    if prove:
        pair.client.prove_access([DATASET], 0.0)
        pair.server.prove_access([DATASET], 0.0)
        pair.pump(0.0)
    cipher = pair.client._send_cipher
    assert cipher is not None
    events: list[object] = []
    for doc in docs:
        doc = with_blinded(doc, DATASET.access_id.blinded(pair.server.session_id))
        body = msgpack.packb(doc, use_bin_type=True)
        events += pair.server.receive_data(cipher.sealed_frame(body), 1.0)
    check(events)


@FUZZ
@given(st.binary(max_size=80), st.binary(max_size=300), st.booleans())
def test_open_connection_authentic_block_frames(header: bytes, payload: bytes, seal: bool) -> None:
    pair = connect()
    cipher = pair.client._send_cipher
    assert cipher is not None
    check(pair.server.receive_data(cipher.block_frame(header, payload, seal), 1.0))


@FUZZ
@given(st.binary(max_size=300))
def test_handshake_receive_path(data: bytes) -> None:
    from aetherfs.protocol.connection import PeerConnection
    from tests.protocol.helpers import config

    conn = PeerConnection(config(), False)
    conn.start(0.0)
    framed = PREFIX.pack(len(data), FrameKind.PLAIN) + data
    check(conn.receive_data(framed, 0.0) + conn.receive_data(data, 0.0))
