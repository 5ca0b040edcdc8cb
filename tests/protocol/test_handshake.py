"""Handshake, admission (fleet secret, certificates, revocation lists) and versions."""

from __future__ import annotations

import pytest

from aetherfs.core.ids import ManifestId
from aetherfs.errors import IntegrityError
from aetherfs.protocol.admission import FleetSecret, NotAdmitted
from aetherfs.protocol.connection import State
from aetherfs.protocol.errors import LocalProtocolError
from aetherfs.protocol.events import ConnectionClosed, Established, RevocationsUpdated
from aetherfs.protocol.handshake import negotiate
from aetherfs.protocol.messages import Bitfield, HaveRange, Reason
from tests.protocol.helpers import DATASET, Fleet, config, connect


def closed(events: list[object]) -> ConnectionClosed:
    found = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(found) == 1, events
    return found[0]


def test_fleet_secret_admits_both_sides() -> None:
    c, s = config(), config()
    pair = connect(c, s)
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    (est_c,) = pair.client_events
    (est_s,) = pair.server_events
    assert isinstance(est_c, Established) and isinstance(est_s, Established)
    assert est_c.peer.key == bytes(s.identity.verify_key)
    assert est_s.peer.key == bytes(c.identity.verify_key)
    assert est_c.peer.version == 2 and est_c.peer.fleet == FleetSecret(bytes(range(32))).fleet_id
    assert pair.client.session_id == pair.server.session_id != b""


def test_wrong_fleet_secret_is_refused() -> None:
    pair = connect(config(), config(FleetSecret(b"x" * 32)))
    for events in (pair.client_events, pair.server_events):
        end = closed(events)
        assert end.reason is Reason.NOT_ADMITTED
    assert not any(isinstance(e, Established) for e in pair.server_events)
    assert isinstance(
        closed(pair.server_events).error or closed(pair.client_events).error, NotAdmitted
    )


def test_certificates_admit_and_check_expiry_fleet_and_revocation() -> None:
    fleet = Fleet()
    a, _ = fleet.member()
    b, _ = fleet.member()
    pair = connect(a, b, now=10.0)
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    assert pair.server.peer is not None and pair.server.peer.agent == "edge"

    expired, _ = fleet.member(expires=5.0)
    pair = connect(a, expired, now=10.0)
    end = closed(pair.client_events)
    assert end.reason is Reason.NOT_ADMITTED and "expired" in end.text

    other_fleet, _ = Fleet().member()
    pair = connect(a, other_fleet, now=10.0)
    assert closed(pair.server_events).reason is Reason.NOT_ADMITTED

    # A secret-admitted agent and a certificate-admitted one do not mix.
    pair = connect(a, config(), now=10.0)
    assert closed(pair.server_events).reason is Reason.NOT_ADMITTED


def test_revocation_list_is_checked_and_travels() -> None:
    fleet = Fleet()
    victim, victim_cert = fleet.member()
    revoked = fleet.revocations(2, victim_cert.serial)
    holder, _ = fleet.member(revocations=revoked)
    pair = connect(holder, victim)
    end = closed(pair.client_events)
    assert end.reason is Reason.NOT_ADMITTED and "revoked" in end.text

    # An older list held by one side is replaced by the newer one its peer passes on.
    old, _ = fleet.member(revocations=fleet.revocations(1))
    pair = connect(holder, old)
    updates = [e for e in pair.server_events if isinstance(e, RevocationsUpdated)]
    assert [u.seq for u in updates] == [2] and updates[0].signed == revoked

    # A list learnt mid-connection drops a peer it revokes.
    a, _ = fleet.member()
    b, b_cert = fleet.member()
    pair = connect(a, b)
    events = pair.client.update_revocations(fleet.revocations(3, b_cert.serial), 1.0)
    assert closed(events).reason is Reason.REVOKED
    _, server_events = pair.pump(1.0)
    assert closed(server_events).reason is Reason.REVOKED and closed(server_events).by_peer

    # A forged list is a protocol error, not an update.
    forger = Fleet(name=fleet.name)
    pair = connect(a, b)
    with pytest.raises(IntegrityError, match="not signed"):
        pair.client.update_revocations(forger.revocations(9), 1.0)
    assert pair.client.state is State.OPEN


def test_negotiate() -> None:
    assert negotiate((1, 2), (1, 2)) == 2
    assert negotiate((1, 2), (1, 1)) == 1
    assert negotiate((1, 5), (3, 9)) == 5
    assert negotiate((2, 2), (1, 1)) is None


def test_two_versions_agree_on_the_older_and_its_messages() -> None:
    pair = connect(config(versions=(1, 1)), config(versions=(1, 2)), [DATASET], [DATASET])
    assert pair.client.version == pair.server.version == 1
    pair.client.prove_access([DATASET], 0.0)
    pair.pump(0.0)
    with pytest.raises(LocalProtocolError, match="version 2"):
        pair.server.send(HaveRange(DATASET.access_id, ManifestId(b"m" * 32), 0, 4), 0.0)
    # Version 1's messages still flow.
    bits = Bitfield.of(DATASET.access_id, ManifestId(b"m" * 32), 4, [0, 3])
    pair.server.send(bits, 0.0)
    got, _ = pair.pump(0.0)
    assert got == [bits]

    both = connect(config(), config(), [DATASET], [DATASET])
    both.client.prove_access([DATASET], 0.0)
    both.pump(0.0)
    both.server.send(HaveRange(DATASET.access_id, ManifestId(b"m" * 32), 0, 4), 0.0)
    got, _ = both.pump(0.0)
    assert got == [HaveRange(DATASET.access_id, ManifestId(b"m" * 32), 0, 4)]


def test_no_common_version_is_a_clean_refusal() -> None:
    pair = connect(config(versions=(2, 2)), config(versions=(1, 1)))
    for events in (pair.client_events, pair.server_events):
        end = closed(events)
        assert end.reason is Reason.NO_COMMON_VERSION and end.error is None
        assert "upgrade" in end.text
    assert pair.client.data_to_send() == b"" and pair.server.data_to_send() == b""


def test_config_refuses_versions_this_build_does_not_speak() -> None:
    with pytest.raises(LocalProtocolError):
        config(versions=(1, 3))
