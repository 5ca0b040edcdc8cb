"""Frames dropped, replayed, reordered, altered, cut short or oversize end the connection;
the frame codec round-trips each kind."""

from __future__ import annotations

import random

import pytest

from aetherfs.protocol.connection import State
from aetherfs.protocol.errors import RemoteProtocolError
from aetherfs.protocol.events import ConnectionClosed
from aetherfs.protocol.frames import (
    MAX_FRAME_BODY,
    PREFIX,
    FrameBuffer,
    FrameCipher,
    FrameKind,
)
from aetherfs.protocol.messages import Ping, Reason
from tests.protocol.helpers import Pair, connect


def three_pings(pair: Pair) -> None:
    for nonce in (1, 2, 3):
        pair.client.send(Ping(nonce), 0.0)


def ended(pair: Pair, tamper: object) -> ConnectionClosed:
    three_pings(pair)
    _, server_events = pair.pump(0.0, to_server=tamper)  # type: ignore[arg-type]
    assert pair.server.state is State.CLOSED
    (end,) = server_events
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.PROTOCOL_ERROR
    assert isinstance(end.error, RemoteProtocolError)
    return end


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda f: [f[0], f[2]], id="dropped"),
        pytest.param(lambda f: [f[0], f[0], f[1]], id="replayed"),
        pytest.param(lambda f: [f[1], f[0], f[2]], id="reordered"),
        pytest.param(lambda f: [f[0][:-1] + bytes([f[0][-1] ^ 0x40])], id="altered"),
        pytest.param(lambda f: [bytes([f[0][0] ^ 1]) + f[0][1:]], id="length altered"),
        pytest.param(lambda f: [f[0][:4] + bytes([FrameKind.BLOCK]) + f[0][5:]], id="kind"),
    ],
)
def test_tampered_frames_end_the_connection(tamper: object) -> None:
    pair = connect()
    end = ended(pair, tamper)
    # The peer is told why (a goodbye the tamperer may of course drop).
    client_events, _ = pair.pump(0.0)
    assert client_events == [] or isinstance(client_events[-1], ConnectionClosed), end


def test_truncated_stream_and_clean_end() -> None:
    pair = connect()
    pair.client.send(Ping(1), 0.0)
    frame = pair.client.data_to_send()
    events = pair.server.receive_data(frame[:-3], 0.0) + pair.server.receive_data(b"", 0.0)
    (end,) = events
    assert isinstance(end, ConnectionClosed) and "truncated" in end.text

    pair = connect()
    (end,) = pair.server.receive_data(b"", 0.0)
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.CONNECTION_LOST
    assert pair.server.receive_data(b"more", 0.0) == []


def test_oversize_frame_is_refused_at_its_prefix() -> None:
    pair = connect()
    events = pair.server.receive_data(PREFIX.pack(MAX_FRAME_BODY + 1, FrameKind.SEALED), 0.0)
    (end,) = events
    assert isinstance(end, ConnectionClosed) and "over the limit" in end.text


def test_random_loss_and_corruption_always_end_cleanly() -> None:
    rng = random.Random(7)
    for _ in range(200):
        pair = connect()
        three_pings(pair)

        def tamper(frames: list[bytes]) -> list[bytes]:
            out = []
            for frame in frames:
                roll = rng.random()
                if roll < 0.3:
                    continue
                if roll < 0.6:
                    at = rng.randrange(len(frame))
                    frame = (
                        frame[:at] + bytes([frame[at] ^ (1 << rng.randrange(8))]) + frame[at + 1 :]
                    )
                out.append(frame)
            return out

        _, events = pair.pump(0.0, to_server=tamper)
        closes = [e for e in events if isinstance(e, ConnectionClosed)]
        assert len(closes) <= 1
        if pair.server.state is State.CLOSED:
            assert closes and isinstance(closes[0].error, RemoteProtocolError)


def test_only_a_frame_split_across_chunks_is_copied() -> None:
    send = FrameCipher(b"k" * 32)
    first, second, third = (send.sealed_frame(bytes([i]) * 100) for i in range(3))
    head, tail = first[:10], first[10:] + second + third
    buffer = FrameBuffer()
    buffer.feed(head)
    assert buffer.next_frame() is None
    assert buffer.pending() == 10
    buffer.feed(tail)
    frames = [buffer.next_frame(), buffer.next_frame(), buffer.next_frame()]
    assert buffer.next_frame() is None and buffer.pending() == 0
    assert [bytes(f.prefix) + bytes(f.body) for f in frames if f] == [first, second, third]
    # The split one was gathered; the two lying whole in the second chunk are views of it.
    assert [f.body.obj is tail for f in frames if f] == [False, True, True]


def test_a_prefix_split_across_chunks() -> None:
    frame = FrameCipher(b"k" * 32).sealed_frame(b"x" * 50)
    buffer = FrameBuffer()
    for piece in (frame[:2], frame[2:4], frame[4:30], frame[30:]):
        assert buffer.next_frame() is None
        buffer.feed(piece)
    got = buffer.next_frame()
    assert got is not None and bytes(got.prefix) + bytes(got.body) == frame
    assert buffer.pending() == 0


def test_frame_codec_round_trip() -> None:
    send, receive = FrameCipher(b"k" * 32), FrameCipher(b"k" * 32)
    buffer = FrameBuffer()
    wire = (
        send.sealed_frame(b"hello")
        + send.block_frame(b"header", b"payload" * 100, seal_payload=False)
        + send.block_frame(b"header2", b"sealed payload", seal_payload=True)
    )
    for i in range(0, len(wire), 7):  # arriving in small pieces
        buffer.feed(wire[i : i + 7])
    frames = []
    while (frame := buffer.next_frame()) is not None:
        frames.append(frame)
    assert [f.kind for f in frames] == [FrameKind.SEALED, FrameKind.BLOCK, FrameKind.SEALED_BLOCK]
    assert receive.open(frames[0].body, frames[0].prefix) == b"hello"
    header, payload = receive.open_block(frames[1])
    assert (header, bytes(payload)) == (b"header", b"payload" * 100)
    header, payload = receive.open_block(frames[2])
    assert (header, bytes(payload)) == (b"header2", b"sealed payload")
    assert buffer.pending() == 0
