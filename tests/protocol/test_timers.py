"""Handshake, idle and no-progress timeouts, all driven by an explicit `now`."""

from __future__ import annotations

from aetherfs.core.ids import ManifestId
from aetherfs.protocol.connection import PeerConnection, State
from aetherfs.protocol.events import ConnectionClosed
from aetherfs.protocol.messages import Reason, Request
from tests.protocol.helpers import DATASET, config, connect


def test_handshake_timeout() -> None:
    conn = PeerConnection(config(handshake_timeout=5.0), True)
    conn.start(100.0)
    assert conn.get_timer() == 105.0
    assert conn.handle_timer(104.9) == []
    (end,) = conn.handle_timer(105.0)
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.HANDSHAKE_TIMEOUT
    assert conn.get_timer() is None


def test_keepalive_holds_an_idle_connection_open_and_silence_closes_it() -> None:
    pair = connect(config(idle_timeout=30.0, keepalive_interval=10.0), config(), now=0.0)
    now = 0.0
    while now < 300.0:  # five minutes of protocol time, both ends answering
        now = min(pair.client.get_timer() or 1e9, pair.server.get_timer() or 1e9)
        pair.client.handle_timer(now)
        pair.server.handle_timer(now)
        pair.pump(now)
    assert pair.client.state is State.OPEN is pair.server.state
    # Now the server falls silent: the client pings, hears nothing, and gives up.
    silent_since = now
    while pair.client.state is State.OPEN:
        now = pair.client.get_timer()  # type: ignore[assignment]
        events = pair.client.handle_timer(now)  # its pings are never delivered
    (end,) = events
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.IDLE_TIMEOUT
    assert silent_since + 20.0 < now <= silent_since + 30.0


def test_peer_holding_requests_without_answering_is_dropped() -> None:
    pair = connect(
        config(progress_timeout=4.0, keepalive_interval=10.0, idle_timeout=30.0),
        config(),
        client_datasets=[DATASET],
        server_datasets=[DATASET],
    )
    pair.client.prove_access([DATASET], 0.0)
    pair.pump(0.0)
    assert pair.client.get_timer() == 10.0  # keepalive; no request open yet
    pair.client.send(
        Request(pair.client.new_request_id(), DATASET.access_id, ManifestId(b"m" * 32), 0), 1.0
    )
    pair.pump(1.0)
    assert pair.client.get_timer() == 5.0
    # Pings keep the connection alive, but nothing answers the request.
    assert pair.client.handle_timer(4.9) == []
    (end,) = pair.client.handle_timer(5.0)
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.NO_PROGRESS
    _, server_events = pair.pump(5.0)
    assert server_events == [ConnectionClosed(Reason.NO_PROGRESS, end.text, True)]
