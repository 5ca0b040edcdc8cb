"""Revocation lists passed between two in-memory connections: taken when newer, refused with
a reason when older, forged or oversized, and carried on version 1 as on version 2."""

from __future__ import annotations

import pytest

from aetherfs.core.fleet_certs import MAX_REVOCATIONS_SIZE, RevocationList
from aetherfs.errors import IntegrityError
from aetherfs.protocol.connection import MAX_REFUSED_LISTS, PeerConnection, State
from aetherfs.protocol.events import (
    ConnectionClosed,
    Established,
    RevocationsRefused,
    RevocationsUpdated,
)
from aetherfs.protocol.messages import Reason, Record, RecordKind
from tests.protocol.helpers import Fleet, connect


def pushed(signed: bytes, total: int | None = None) -> Record:
    """A revocation list pushed whole (or its first chunk, when `total` says it is larger)."""
    return Record(0, RecordKind.REVOCATIONS, None, b"", 0, total or len(signed), signed)


def of(kind: type, events: list[object]) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def test_an_older_list_is_refused_and_the_connection_kept() -> None:
    fleet = Fleet()
    a, _ = fleet.member(revocations=fleet.revocations(3, "x"))
    b, _ = fleet.member(revocations=fleet.revocations(1))
    pair = connect(a, b)
    # b held seq 1 and was passed seq 3 at once; a sends b's old one back at it.
    assert [e.seq for e in of(RevocationsUpdated, pair.server_events)] == [3]  # type: ignore[attr-defined]
    pair.server.send(pushed(fleet.revocations(1)), 1.0)
    got, _ = pair.pump(1.0)
    assert got == [RevocationsRefused(1, 3, "its seq 1 is not newer than the list held (seq 3)")]
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    # Lists cross now and then; a peer that keeps sending old ones is dropped.
    for _ in range(MAX_REFUSED_LISTS - 1):
        pair.server.send(pushed(fleet.revocations(2)), 1.0)
    got, _ = pair.pump(1.0)
    assert len(of(RevocationsRefused, got)) == MAX_REFUSED_LISTS - 1
    assert pair.client.state is State.OPEN
    pair.server.send(pushed(fleet.revocations(2)), 1.0)
    got, _ = pair.pump(1.0)
    end = of(ConnectionClosed, got)[0]
    assert end.reason is Reason.PROTOCOL_ERROR and "older than ours" in end.text  # type: ignore[attr-defined]


def test_lists_that_cross_on_the_wire_are_taken_once_and_not_refused() -> None:
    fleet = Fleet()
    a, _ = fleet.member()
    b, _ = fleet.member()
    pair = connect(a, b)
    newer = fleet.revocations(2, "x")
    # Both learn the same list at once; each passes it to the other, who holds it already.
    pair.client.update_revocations(newer, 1.0)
    pair.server.update_revocations(newer, 1.0)
    got_client, got_server = pair.pump(1.0)
    assert got_client == [] and got_server == []
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN


@pytest.mark.parametrize("forger", ["other key", "other fleet"])
def test_a_list_not_of_this_fleet_is_refused_and_ends_the_connection(forger: str) -> None:
    fleet = Fleet()
    a, _ = fleet.member()
    b, _ = fleet.member()
    pair = connect(a, b)
    other = Fleet(name=fleet.name) if forger == "other key" else Fleet(key=fleet.key, name="f-2")
    pair.server.send(pushed(other.revocations(9, "x")), 1.0)
    got, told = pair.pump(1.0)
    refused, end = got
    assert isinstance(refused, RevocationsRefused) and refused.seq is None
    why = "not signed by this fleet's key" if forger == "other key" else "of fleet 'f-2'"
    assert why in refused.reason
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.PROTOCOL_ERROR
    assert not of(RevocationsUpdated, got)
    said = told[0]
    assert isinstance(said, ConnectionClosed) and said.by_peer
    assert said.reason is Reason.PROTOCOL_ERROR and "revocation list" in said.text


def test_an_oversized_list_is_refused_everywhere() -> None:
    fleet = Fleet()
    big = RevocationList(fleet.name, 5, 0.0, frozenset(f"{n:032x}" for n in range(8000)))
    signed = big.sign(fleet.key)
    assert len(signed) > MAX_REVOCATIONS_SIZE
    with pytest.raises(IntegrityError, match="over the limit"):
        RevocationList.verify(signed, bytes(fleet.key.verify_key))
    # Over the wire it cannot come whole; its first chunk is refused and ends the connection.
    a, _ = fleet.member()
    b, _ = fleet.member()
    pair = connect(a, b)
    pair.server.send(pushed(signed[:MAX_REVOCATIONS_SIZE], total=len(signed)), 1.0)
    got, _ = pair.pump(1.0)
    refused, end = got
    assert isinstance(refused, RevocationsRefused) and "whole in one record" in refused.reason
    assert isinstance(end, ConnectionClosed) and end.reason is Reason.PROTOCOL_ERROR
    # And a connection will not be made to hold one.
    with pytest.raises(IntegrityError, match="over the limit"):
        PeerConnection(fleet.member(revocations=signed)[0], True)


def test_lists_travel_to_and_from_a_version_1_agent() -> None:
    """Revocation lists are RECORDs of kind 3 and the `revocations_seq` of AUTH, both of
    version 1: an agent of the first protocol version takes them and passes them on."""
    fleet = Fleet()
    newer = fleet.revocations(2)
    old, _ = fleet.member(revocations=fleet.revocations(1), versions=(1, 1))
    new, _ = fleet.member(revocations=newer)
    pair = connect(new, old)
    assert pair.client.version == pair.server.version == 1
    updates = of(RevocationsUpdated, pair.server_events)
    assert [(u.seq, u.signed) for u in updates] == [(2, newer)]  # type: ignore[attr-defined]
    # And the other way: the version 1 agent learns a list and drops a peer it names.
    victim, victim_cert = fleet.member()
    old_pair = connect(fleet.member(versions=(1, 1))[0], victim)
    events = old_pair.client.update_revocations(fleet.revocations(3, victim_cert.serial), 1.0)
    assert of(ConnectionClosed, events)[0].reason is Reason.REVOKED  # type: ignore[attr-defined]
    _, told = old_pair.pump(1.0)
    assert of(ConnectionClosed, told)[0].reason is Reason.REVOKED  # type: ignore[attr-defined]


def test_certificates_are_checked_in_wall_time_not_the_callers_clock() -> None:
    # The caller's clock (trio's) starts anywhere: `wall_offset` maps it to Unix time.
    fleet = Fleet()
    a, _ = fleet.member(expires=1000.0)
    b, _ = fleet.member(expires=1000.0)
    pair = connect(a, b, now=10.0)
    assert of(Established, pair.client_events) and of(Established, pair.server_events)
    late_a, _ = fleet.member(expires=1000.0, wall_offset=5000.0)
    pair = connect(late_a, b, now=10.0)  # to a, it is 5010: b's certificate has expired
    end = of(ConnectionClosed, pair.client_events)[0]
    assert end.reason is Reason.NOT_ADMITTED and "expired" in end.text  # type: ignore[attr-defined]
