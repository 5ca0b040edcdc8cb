"""Fleet membership: the keyring's fleet secret, enrolment through a real hub (certificate
kept 0600, renewal schedule and renewal, revocation lists fetched and gossiped, expiry
reported), and
PeerConnections built from the admissions that result."""

from __future__ import annotations

import io
import stat
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from aetherfs.agent import renewal
from aetherfs.agent.config import AgentConfig, build_config
from aetherfs.agent.identity import AgentIdentity, load_identity
from aetherfs.agent.log import Logger
from aetherfs.agent.membership import (
    CertificateMembership,
    Enrolment,
    HubAddress,
    NotEnrolled,
    SecretMembership,
    dataset_accesses,
    enrolment_path,
    fleet_secret,
    load_enrolment,
    open_membership,
    prepare_enrolment,
)
from aetherfs.agent.private_file import write_private
from aetherfs.core import crypto
from aetherfs.core.fleet_certs import AgentCertificate, RevocationList
from aetherfs.errors import Forbidden, InvalidInput
from aetherfs.hub.fleet import fleet_signing_key
from aetherfs.keys import Keyring
from aetherfs.protocol.admission import FleetCertificate, FleetSecret
from aetherfs.protocol.connection import PeerConfig, PeerConnection
from aetherfs.protocol.events import ConnectionClosed, Established
from aetherfs.protocol.messages import Reason, Record, RecordKind
from aetherfs.repository.hub_backed import HubKeyring
from aetherfs.swarm.memory import MemoryStore, SyntheticVersion, synthetic_version
from tests.agent.conftest import AgentProcess, push, write_dataset
from tests.conftest import Cli
from tests.fixtures.ports import free_port
from tests.hub.conftest import hub_process
from tests.hub.helpers import RunningHub, open_repo, start_hub
from tests.hub.test_cli_hub import client_cli
from tests.protocol.helpers import connect
from tests.swarm.helpers import Node, refused_as, start_node, until, wait_for_peers

DAY = 86400.0


@pytest.fixture
async def hub(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A real hub (Hypercorn on a loopback port) on a fresh local store."""
    keys = tmp_path / "hub-keys" / "hub.json"
    running = await start_hub(nursery, open_repo((tmp_path / "store").as_uri(), keys))
    yield running
    running.cancel.cancel()


def established(events: list[object]) -> bool:
    return any(isinstance(e, Established) for e in events)


def closed(events: list[object]) -> ConnectionClosed | None:
    return next((e for e in events if isinstance(e, ConnectionClosed)), None)


def peer(identity: AgentIdentity, admission: FleetSecret | FleetCertificate | None) -> PeerConfig:
    assert admission is not None
    return PeerConfig(identity.signing_key, admission, agent=str(identity.agent_id))


def hub_keyring(fetch: Callable[[str], dict[str, str]] | None = None) -> HubKeyring:
    """The keyring a hub hands out: dataset keys on demand, no master secret."""
    return HubKeyring(store_id="store-1", trusted_signers=(), fetch=fetch)


# Fleet secret -------------------------------------------------------------------------------


def test_fleet_secret_admits_agents_of_one_keyring_only(tmp_path: Path) -> None:
    keyring = Keyring.generate("store-1")
    assert fleet_secret(keyring) == crypto.derive_key(keyring.master, "fleet secret")
    a, b, c = (load_identity(tmp_path / n) for n in "abc")
    ours = SecretMembership.from_keyring(keyring)
    theirs = SecretMembership.from_keyring(Keyring.generate("store-2"))
    assert ours.status(0.0)["can_join_peers"] and ours.fleet_id != theirs.fleet_id
    pair = connect(peer(a, ours.admission(0.0)), peer(b, ours.admission(0.0)))
    assert established(pair.client_events) and established(pair.server_events)
    pair = connect(peer(a, ours.admission(0.0)), peer(c, theirs.admission(0.0)))
    refused = closed(pair.client_events)
    assert refused is not None and refused.reason == Reason.NOT_ADMITTED


def test_a_hub_keyring_has_no_fleet_secret() -> None:
    # A hub's keyring holds no master (b""): a secret derived from it would be everyone's.
    keyring = hub_keyring()
    assert fleet_secret(keyring) is None
    with pytest.raises(NotEnrolled, match="no fleet secret"):
        SecretMembership.from_keyring(keyring)


def test_dataset_accesses_from_the_keys_held() -> None:
    keyring = Keyring.generate("store-1")
    accesses = dataset_accesses(keyring, ["team/a", "team/b", "team/a"])
    assert list(accesses.granted) == ["team/a", "team/b"] and not accesses.missing
    assert accesses.granted["team/a"].access_id != accesses.granted["team/b"].access_id

    def from_hub(dataset: str) -> dict[str, str]:
        if dataset == "team/secret":
            raise Forbidden("not allowed: no read grant on team/secret")
        return {"dataset_key": keyring.dataset_key(dataset).hex()}

    reader = hub_keyring(from_hub)
    through_hub = dataset_accesses(reader, ["team/a", "team/secret"])
    # The same access id whether the key came from the keyring or from the hub.
    assert through_hub.granted["team/a"].access_id == accesses.granted["team/a"].access_id
    assert "no read grant" in through_hub.missing["team/secret"]


# Renewal schedule (pure) --------------------------------------------------------------------


def test_renewal_is_due_between_half_and_seven_tenths_of_the_lifetime() -> None:
    times = []
    for n in range(50):
        cert = AgentCertificate("f", "a", b"k" * 32, f"serial-{n}", 1000.0, 1000.0 + 30 * DAY)
        at = renewal.renew_at(cert)
        assert 1000.0 + 15 * DAY <= at < 1000.0 + 21 * DAY
        assert not renewal.renewal_due(cert, at - 1) and renewal.renewal_due(cert, at)
        assert renewal.renew_at(cert) == at  # fixed per certificate: a restart keeps the plan
        times.append(at)
    assert len(set(times)) == 50 and max(times) - min(times) > 4 * DAY  # a fleet is spread


def test_failed_renewals_back_off_but_fit_before_expiry() -> None:
    cert = AgentCertificate("f", "a", b"k" * 32, "s", 0.0, 30 * DAY)
    now = 20 * DAY
    waits = [renewal.retry_at(cert, now, n) - now for n in range(1, 10)]
    assert waits[:4] == [30.0, 60.0, 120.0, 240.0]
    assert max(waits) == renewal.MAX_RETRY
    near_end = 30 * DAY - 400
    assert renewal.retry_at(cert, near_end, 9) - near_end == 100.0  # a quarter of what is left
    assert renewal.retry_at(cert, 30 * DAY + 1, 9) - (30 * DAY + 1) == renewal.MAX_RETRY


# Enrolment through a real hub ---------------------------------------------------------------


async def join_token(hub: RunningHub) -> str:
    async with hub.client(hub.admin) as admin:
        made = await admin.post("/v1/fleet/join-tokens", json={"ttl_seconds": 600})
    assert made.status_code == 201
    return str(made.json()["join_token"])


async def enrolled(hub: RunningHub, state: Path, name: str) -> CertificateMembership:
    identity = load_identity(state)
    token = await join_token(hub)
    address = HubAddress(hub.url)
    enrolment = await trio.to_thread.run_sync(
        prepare_enrolment, state, identity, address, token, name, time.time()
    )
    assert enrolment is not None
    return CertificateMembership(state, identity, enrolment, address, revocation_interval=0.2)


async def test_enrol_store_restart_handshake_revoke(hub: RunningHub, tmp_path: Path) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    b = await enrolled(hub, tmp_path / "b", "edge-b")
    now = time.time()

    # Kept 0600 beside the identity; checked offline with the fleet's public key.
    path = enrolment_path(tmp_path / "a")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fleet_public = bytes(fleet_signing_key(hub.repo.keyring).verify_key)
    cert = AgentCertificate.verify(a.enrolment.certificate, fleet_public, now)
    assert (cert.agent, cert.key) == ("edge-a", a.identity.public_key)
    assert a.fleet_id == hub.repo.keyring.store_id
    status = a.status(now)
    assert status["can_join_peers"] and status["agent_id"] == str(a.identity.agent_id)
    assert cert.issued + 15 * DAY <= status["renew_at"] < cert.issued + 21 * DAY
    token_before = a.enrolment.token

    # Renewal (`POST /v1/fleet/renew`): the same key, a new serial and a later expiry, kept
    # on disk at once; the API token stays the one enrolment gave.
    assert await a.renew_once(now + 1), a.last_error
    fresh = a.certificate
    assert fresh.key == cert.key and fresh.agent == cert.agent and fresh.serial != cert.serial
    assert fresh.expires > cert.expires and load_enrolment(tmp_path / "a") == a.enrolment
    assert a.enrolment.token == token_before and a.failures == 0 and a.last_error is None
    assert a.status(now)["last_renewed"] == now + 1 and a.next_renewal() > now + 15 * DAY
    cert = fresh

    # A restart reuses what was kept: the spent join token is not sent again.
    again = await trio.to_thread.run_sync(
        prepare_enrolment, tmp_path / "a", a.identity, HubAddress(hub.url), "afj_spent", "x", now
    )
    assert again == a.enrolment

    # Two enrolled agents admit each other.
    pair = connect(peer(a.identity, a.admission(now)), peer(b.identity, b.admission(now)), now=now)
    assert established(pair.client_events) and established(pair.server_events)
    before = b.admission(now)  # what b would present if it never heard of its revocation

    # Revoke b. a fetches the list from the hub and tells its listeners.
    heard: list[bytes] = []
    a.on_revocations(heard.append)
    async with hub.client(hub.admin) as admin:
        r = await admin.post("/v1/fleet/revocations", json={"agent": "edge-b"})
    assert r.status_code == 200
    assert await a.fetch_once(time.time())
    held = RevocationList.verify(heard[0], fleet_public)
    assert b.certificate.serial in held.serials and held.seq == 1
    assert not await a.fetch_once(time.time())  # the same seq again: nothing new
    assert len(heard) == 1
    assert load_enrolment(tmp_path / "a") == a.enrolment  # kept on disk at once

    # b's API token was revoked with it; the list still reaches it through a peer.
    await trio.sleep(0.4)  # the test hub caches tokens for 0.3 s
    assert not await b.fetch_once(time.time())
    assert "revocation list not fetched" in (b.last_error or "")
    assert await b.offer_revocations(heard[0]) and b.revoked()
    assert b.admission(time.time()) is None
    assert "was revoked" in (b.status(time.time())["problem"] or "")

    # A connection from b's old admission is refused by a, which holds the list.
    pair = connect(peer(a.identity, a.admission(now)), peer(b.identity, before), now=now)
    refused = closed(pair.client_events)
    assert refused is not None and refused.reason == Reason.NOT_ADMITTED
    assert not established(pair.client_events)
    # And b, offered a list by a peer in an open connection, drops the revoked one.
    c = await enrolled(hub, tmp_path / "c", "edge-c")
    pair = connect(peer(c.identity, c.admission(now)), peer(b.identity, before), now=now)
    assert established(pair.client_events)
    dropped = closed(pair.client.update_revocations(heard[0], now))
    assert dropped is not None and dropped.reason == Reason.REVOKED
    _, told = pair.pump(now)
    said = closed(told)
    assert said is not None and said.by_peer and said.reason == Reason.REVOKED


async def test_revocations_offered_are_checked(hub: RunningHub, tmp_path: Path) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    key = fleet_signing_key(hub.repo.keyring)
    fleet = a.fleet_id
    assert await a.offer_revocations(RevocationList(fleet, 3, 0.0, frozenset({"x"})).sign(key))
    assert not await a.offer_revocations(RevocationList(fleet, 3, 0.0, frozenset({"y"})).sign(key))
    assert not await a.offer_revocations(RevocationList(fleet, 2, 0.0, frozenset()).sign(key))
    assert not await a.offer_revocations(RevocationList("other", 9, 0.0, frozenset()).sign(key))
    forged = RevocationList(fleet, 9, 0.0, frozenset())
    assert not await a.offer_revocations(forged.sign(Keyring.generate("s").signing_key))
    assert not await a.offer_revocations(b"garbage")
    held = a.enrolment.revocation_list
    assert held is not None and (held.seq, held.serials) == (3, frozenset({"x"}))


async def test_hub_out_of_reach_and_expiry(hub: RunningHub, tmp_path: Path) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    cert = a.certificate
    # The hub out of reach: an unexpired certificate keeps working.
    a.hub = HubAddress("http://127.0.0.1:9")
    assert not await a.fetch_once(time.time())
    assert not await a.renew_once(time.time())
    assert a.failures == 1 and a.next_renewal() > time.time()
    assert a.admission(time.time()) is not None
    # Past its expiry it cannot join peers, and says so; peers refuse it too.
    late = cert.expires + 1
    status = a.status(late)
    assert not status["can_join_peers"] and a.admission(late) is None
    assert "expired" in status["problem"] and "--join-token" in status["problem"]
    b = await enrolled(hub, tmp_path / "b", "edge-b")
    pair = connect(
        peer(b.identity, b.enrolment.admission()),
        peer(a.identity, a.enrolment.admission()),
        now=late,
    )
    refused = closed(pair.client_events)
    assert refused is not None and refused.reason == Reason.NOT_ADMITTED
    assert "expired" in refused.text


async def test_start_without_a_usable_enrolment(hub: RunningHub, tmp_path: Path) -> None:
    identity = load_identity(tmp_path)
    address = HubAddress(hub.url)
    run = partial(prepare_enrolment, tmp_path, identity, address)
    assert await trio.to_thread.run_sync(run, None, "edge-a", time.time()) is None
    with pytest.raises(NotEnrolled, match=r"refused the join token.*new one"):
        await trio.to_thread.run_sync(run, "afj_unknown", "edge-a", time.time())
    token = await join_token(hub)
    kept = await trio.to_thread.run_sync(run, token, "edge-a", time.time())
    assert kept is not None
    # Expired and a new join token given: enrols again, same identity, new serial.
    token = await join_token(hub)
    fresh = await trio.to_thread.run_sync(run, token, "edge-a", kept.cert.expires + 1)
    assert fresh is not None and fresh.cert.serial != kept.cert.serial
    assert fresh.cert.key == identity.public_key
    # An enrolment made for an identity since deleted is not used.
    (tmp_path / "identity.key").unlink()
    other = load_identity(tmp_path)
    assert (
        await trio.to_thread.run_sync(
            partial(prepare_enrolment, tmp_path, other, address), None, "edge-a", time.time()
        )
        is None
    )


def test_a_damaged_enrolment_is_refused(tmp_path: Path) -> None:
    path = enrolment_path(tmp_path)
    enrolment = Enrolment("http://hub", "f", b"\0" * 32, b"not signed", "tok")
    write_private(path, enrolment.to_json())
    with pytest.raises(NotEnrolled, match=r"not a valid enrolment.*enrol again"):
        load_enrolment(tmp_path)


async def test_the_loop_fetches_revocations_at_its_interval(
    hub: RunningHub, tmp_path: Path, nursery: trio.Nursery
) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    b = await enrolled(hub, tmp_path / "b", "edge-b")
    heard = trio.Event()
    a.on_revocations(lambda signed: heard.set())
    await nursery.start(a.run)
    async with hub.client(hub.admin) as admin:
        await admin.post("/v1/fleet/revocations", json={"serial": b.certificate.serial})
    with trio.fail_after(10):
        await heard.wait()
    held = a.enrolment.revocation_list
    assert held is not None and b.certificate.serial in held.serials
    assert a.last_fetched is not None


# `aetherfs agent --hub URL --join-token TOKEN`, in real processes ---------------------------


def published_for_edge_1(cli: Cli, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A version on a store that agent `edge-1` may read; its id and a hub admin's headers."""
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    write_dataset(src, 1, big=100_000)
    v1 = push(cli, src, "team/geo-db:1.0.0", "stable")
    cli("hub", "grant", "team/geo-db", "agent:edge-1", "read")
    admin_token = cli("hub", "token", "create", "--name", "ops", "--admin").out.strip()
    return v1, {"Authorization": f"Bearer {admin_token}"}


def test_agent_enrols_with_a_join_token_and_keeps_the_list(cli: Cli, tmp_path: Path) -> None:
    v1, admin = published_for_edge_1(cli, tmp_path)
    with hub_process(cli) as hub:

        def join() -> str:
            made = httpx.post(f"{hub.url}/v1/fleet/join-tokens", json={}, headers=admin)
            return str(made.json()["join_token"])

        # The agent's host has no keyring, no store and no `aetherfs login`: a join token only.
        host = client_cli(cli, hub.url, "agent-host")
        host.env["AETHERFS_JOIN_TOKEN"] = join()
        args = ["--subscribe", "team/geo-db:stable", "--poll-interval", "0.2"]
        args += ["--agent-name", "edge-1", "--revocation-interval", "0.3"]
        agent = AgentProcess(host, tmp_path / "root", args, tmp_path / "agent.log")
        state = agent.data_root / ".agent"
        try:
            agent.start()
            agent.wait_live("team/geo-db:stable", v1)  # through the hub, with its agent token
            for name in ("identity.key", "fleet.json"):
                assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
            kept = load_enrolment(state)
            assert kept is not None and kept.cert.agent == "edge-1"
            assert kept.cert.key == load_identity(state, create=False).public_key
            assert f"event=fleet.enrolled fleet={kept.fleet} agent=edge-1" in agent.log()

            # Another agent is revoked: the running agent fetches the list and keeps it.
            other = load_identity(tmp_path / "other")
            issued = httpx.post(
                f"{hub.url}/v1/fleet/enrol",
                json={
                    "join_token": join(),
                    "agent": "edge-2",
                    "public_key": other.public_key.hex(),
                },
            ).json()
            r = httpx.post(
                f"{hub.url}/v1/fleet/revocations", json={"agent": "edge-2"}, headers=admin
            )
            assert r.status_code == 200
            deadline = time.monotonic() + 20
            while "event=fleet.revocations seq=1" not in agent.log():
                assert time.monotonic() < deadline, agent.log()
                time.sleep(0.05)
            held = load_enrolment(state)
            assert held is not None and held.revocation_list is not None
            assert issued["serial"] in held.revocation_list.serials
            assert agent.stop() == 0

            # Restarted with the same (spent) join token: the kept certificate is used.
            agent.log_path = tmp_path / "agent-again.log"
            agent.start()
            assert f"event=fleet.enrolled fleet={kept.fleet} agent=edge-1" in agent.log()
            assert f"serial={kept.cert.serial}" in agent.log()
            assert load_enrolment(state) == held  # not enrolled again
            assert agent.stop() == 0
        finally:
            agent.close()


def test_a_running_agent_renews_through_a_hub_process(cli: Cli, tmp_path: Path) -> None:
    v1, admin = published_for_edge_1(cli, tmp_path)
    lifetime = 8.0  # seconds: renewed between 4 and 5.6 s after it is issued
    with hub_process(cli, "--cert-days", repr(lifetime / DAY)) as hub:
        made = httpx.post(f"{hub.url}/v1/fleet/join-tokens", json={}, headers=admin)
        host = client_cli(cli, hub.url, "agent-host")
        host.env["AETHERFS_JOIN_TOKEN"] = str(made.json()["join_token"])
        args = ["--subscribe", "team/geo-db:stable", "--poll-interval", "0.2"]
        args += ["--agent-name", "edge-1"]
        agent = AgentProcess(host, tmp_path / "root", args, tmp_path / "agent.log")
        state = agent.data_root / ".agent"
        try:
            agent.start()
            agent.wait_live("team/geo-db:stable", v1)
            first = load_enrolment(state)
            assert first is not None
            assert first.cert.expires - first.cert.issued == pytest.approx(lifetime)
            deadline = time.monotonic() + 30
            while "event=fleet.renewed" not in agent.log():
                assert time.monotonic() < deadline, agent.log()
                assert "fleet.renewal_failed" not in agent.log(), agent.log()
                time.sleep(0.1)
            renewed = load_enrolment(state)
            assert renewed is not None and renewed.cert.serial != first.cert.serial
            assert (renewed.cert.agent, renewed.cert.key) == ("edge-1", first.cert.key)
            assert renewed.cert.expires > first.cert.expires and renewed.token == first.token
            assert f"serial={renewed.cert.serial}" in agent.log()
            entries = httpx.get(f"{hub.url}/v1/audit", headers=admin).json()
            renewals = [e for e in entries if e["action"] == "fleet.renew"]
            assert renewals and renewals[0]["subject"] == "agent:edge-1"
            assert renewals[0]["detail"]["previous"] == first.cert.serial
            assert agent.stop() == 0
        finally:
            agent.close()


def test_enrolled_agent_processes_peer_and_drop_a_revoked_one(cli: Cli, tmp_path: Path) -> None:
    """Two `aetherfs agent --join-token` processes on loopback peers: the running engines
    admit each other by certificate, and one drops the other once its list says revoked."""
    v1, admin = published_for_edge_1(cli, tmp_path)
    cli("hub", "grant", "team/geo-db", "agent:edge-2", "read")
    ports = (free_port(), free_port())
    with hub_process(cli) as hub:
        agents = []
        for n, (port, other) in enumerate((ports, ports[::-1]), start=1):
            made = httpx.post(f"{hub.url}/v1/fleet/join-tokens", json={}, headers=admin)
            host = client_cli(cli, hub.url, f"agent-host-{n}")
            host.env["AETHERFS_JOIN_TOKEN"] = str(made.json()["join_token"])
            args = ["--subscribe", "team/geo-db:stable", "--poll-interval", "0.2"]
            args += ["--agent-name", f"edge-{n}", "--revocation-interval", "0.3", "--no-mdns"]
            args += ["--peer-listen", f"127.0.0.1:{port}", "--peer", f"127.0.0.1:{other}"]
            log = tmp_path / f"agent-{n}.log"
            agents.append(AgentProcess(host, tmp_path / f"root-{n}", args, log, peers=True))
        one, two = agents
        try:
            for agent in agents:
                agent.start()
            for agent in agents:
                agent.wait_live("team/geo-db:stable", v1)

            def peer_states(snap: dict[str, Any]) -> list[str]:
                return [p["state"] for p in snap["peers"] if p["agent"] == "edge-2"]

            one.wait_for(lambda snap: peer_states(snap) == ["open"], "edge-2 connected")
            r = httpx.post(
                f"{hub.url}/v1/fleet/revocations", json={"agent": "edge-2"}, headers=admin
            )
            assert r.status_code == 200

            def dropped(snap: dict[str, Any]) -> bool:
                refused = snap["peer_exchange"]["refused"]
                return peer_states(snap) == ["gone"] and any(
                    r["reason"] == "not_admitted" and "was revoked" in r["text"] for r in refused
                )

            one.wait_for(dropped, "edge-2 dropped and refused")
            assert "event=fleet.revocations seq=1" in one.log()
            assert one.stop() == 0 and two.stop() == 0
        finally:
            for agent in agents:
                agent.close()


# Configuration ---------------------------------------------------------------------------


def test_join_token_settings(tmp_path: Path) -> None:
    def build(file: dict[str, Any], flags: dict[str, Any], env: dict[str, str]) -> AgentConfig:
        base = {"data_root": str(tmp_path / "root"), **flags}
        return build_config(file, base, env, tmp_path / "keys", "file:///nowhere")

    token_file = tmp_path / "join"
    token_file.write_text("afj_from_file\nignored\n")
    env = {"AETHERFS_JOIN_TOKEN": "afj_from_env"}
    assert build({}, {}, env).join_token == "afj_from_env"
    assert build({"join_token_file": str(token_file)}, {}, env).join_token == "afj_from_file"
    assert build({}, {"join_token": "afj_flag"}, env).join_token == "afj_flag"
    config = build({}, {"join_token": "afj_flag"}, {})
    assert "afj_flag" not in repr(config)  # a secret: never in a log line or traceback
    assert config.agent_name is None and config.revocation_interval == 300.0
    config = build({"agent_name": "edge-1", "revocation_interval": 5}, {}, {})
    assert (config.agent_name, config.revocation_interval) == ("edge-1", 5.0)
    with pytest.raises(InvalidInput, match="bad agent id"):
        build({}, {"agent_name": "Edge 1"}, {})
    with pytest.raises(InvalidInput, match="read-only"):
        build({}, {"join_token": "afj_x", "read_only": True}, {})
    with pytest.raises(InvalidInput, match="cannot read the join token file"):
        build({}, {"join_token_file": str(tmp_path / "missing")}, {})
    with pytest.raises(InvalidInput, match="revocation_interval"):
        build({"revocation_interval": 0}, {}, {})


def test_a_join_token_needs_a_hub(cli: Cli, tmp_path: Path) -> None:
    done = cli("agent", "--data-root", str(tmp_path / "root"), "--join-token", "afj_x", check=False)
    assert done.code == 2 and "give --hub URL" in done.err and "Traceback" not in done.err


async def test_the_loop_renews_when_due(
    hub: RunningHub, tmp_path: Path, nursery: trio.Nursery
) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    cert = a.certificate
    later = renewal.renew_at(cert) + 1 - time.time()  # the loop's clock, past the renewal time
    await nursery.start(partial(a.run, lambda: time.time() + later))
    with trio.fail_after(10):
        while a.failures == 0 and a.certificate == cert:
            await trio.sleep(0.05)
    assert a.failures == 0, a.last_error  # renewed, not failed
    fresh = a.certificate
    assert fresh.expires > cert.expires and fresh.serial != cert.serial and fresh.key == cert.key
    assert load_enrolment(tmp_path / "a") == a.enrolment and a.admission(time.time()) is not None
    assert a.next_renewal() == renewal.renew_at(a.certificate)  # no retry pending


async def test_an_expired_certificate_is_reported_at_start(hub: RunningHub, tmp_path: Path) -> None:
    a = await enrolled(hub, tmp_path / "root" / ".agent", "edge-a")
    config = build_config(
        {}, {"data_root": str(tmp_path / "root")}, {}, tmp_path / "keys", "file:///x"
    )
    out = io.StringIO()
    late = a.certificate.expires + 1
    again = await trio.to_thread.run_sync(
        open_membership, config, a.identity, HubAddress(hub.url), Logger(out), late
    )
    assert again is not None and again.admission(late) is None
    lines = out.getvalue().splitlines()
    assert "event=fleet.enrolled" in lines[0] and f"serial={a.certificate.serial}" in lines[0]
    assert "level=warning event=fleet.cannot_join" in lines[1] and "expired" in lines[1]


# Revocation lists and renewals reaching running engines ------------------------------------


async def engine_of(
    nursery: trio.Nursery, member: CertificateMembership, version: SyntheticVersion, *dial: Node
) -> Node:
    """A swarm engine (loopback, in-memory blocks) admitted as `member`, kept current by it
    the way `PeerExchange` keeps the agent's (`link_engine`)."""
    admission = member.admission(time.time())
    assert admission is not None
    node = await start_node(
        nursery,
        MemoryStore(version.packs),
        version,
        peers=[n.address for n in dial],
        fleet=admission,
        identity=member.identity.signing_key,
    )
    member.link_engine(node.engine, nursery)
    return node


async def hostile(port: int, member: CertificateMembership, record: Record) -> ConnectionClosed:
    """An admitted peer that sends `record` in the same write as its Auth (so both arrive in
    one read: the connection opens and ends in it); how it ended."""
    admission = member.admission(time.time())
    assert admission is not None
    config = PeerConfig(
        member.identity.signing_key, admission, wall_offset=time.time() - trio.current_time()
    )
    conn = PeerConnection(config, initiator=True)
    conn.start(trio.current_time())
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(conn.data_to_send())
            while True:
                events = conn.receive_data(await stream.receive_some(65536), trio.current_time())
                if any(isinstance(e, Established) for e in events):
                    conn.send(record, trio.current_time())
                if conn.peer is not None:  # our Auth waits for the record
                    await stream.send_all(conn.data_to_send())
                end = closed(events)
                if end is not None:
                    return end


async def test_an_agent_without_a_hub_learns_a_revocation_from_a_peer(
    hub: RunningHub, tmp_path: Path, nursery: trio.Nursery
) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    b = await enrolled(hub, tmp_path / "b", "edge-b")
    c = await enrolled(hub, tmp_path / "c", "edge-c")
    c.hub = HubAddress("http://127.0.0.1:9")  # c cannot reach the hub
    log = io.StringIO()
    c.logger = Logger(log)
    version = synthetic_version("fleet", pieces=2)
    node_a = await engine_of(nursery, a, version)
    node_b = await engine_of(nursery, b, version, node_a)
    node_c = await engine_of(nursery, c, version, node_a, node_b)
    await wait_for_peers([node_a, node_b, node_c], version, 2)
    b_id = node_b.engine.self_id

    # Revoked at the hub; a fetches the list: its own link to b ends as it takes it.
    async with hub.client(hub.admin) as admin:
        r = await admin.post("/v1/fleet/revocations", json={"agent": "edge-b"})
    assert r.status_code == 200
    assert await a.fetch_once(time.time())
    assert b_id not in node_a.engine.connected()

    # c, with no hub, is passed the list by a: it drops b, keeps the list on disk (0600)
    # and logs it; b's handshakes are refused by both from now on.
    assert not await c.fetch_once(time.time())
    await until(lambda: "event=fleet.revocations seq=1" in log.getvalue())  # once on disk
    kept = load_enrolment(tmp_path / "c")
    assert kept is not None and kept.revocation_list is not None
    assert b.certificate.serial in kept.revocation_list.serials
    assert stat.S_IMODE(enrolment_path(tmp_path / "c").stat().st_mode) == 0o600
    assert b_id not in node_c.engine.connected()
    await until(lambda: refused_as(node_c, "was revoked"))
    assert node_c.engine.connected() == [node_a.engine.self_id]

    # Restarted from what it kept, still without a hub, c refuses b at once.
    node_c.scope.cancel()
    log = io.StringIO()
    again = CertificateMembership(tmp_path / "c", c.identity, kept, c.hub, logger=Logger(log))
    node_c2 = await engine_of(nursery, again, version, node_b)
    await until(lambda: refused_as(node_c2, "was revoked"))
    assert node_c2.engine.connected() == []

    # A peer passing a list not signed by the fleet key is dropped, and c says why.
    d = await enrolled(hub, tmp_path / "d", "edge-d")
    forger = Keyring.generate("x").signing_key
    forged = RevocationList(c.fleet_id, 99, 0.0, frozenset()).sign(forger)
    record = Record(0, RecordKind.REVOCATIONS, None, b"", 0, len(forged), forged)
    end = await hostile(node_c2.engine.port, d, record)
    assert end.by_peer and end.reason == Reason.PROTOCOL_ERROR and "revocation list" in end.text
    line = next(x for x in log.getvalue().splitlines() if "fleet.revocations_refused" in x)
    assert "level=warning" in line and "not signed by this fleet's key" in line
    held = again.enrolment.revocation_list
    assert held is not None and held.seq == 1  # the forged seq 99 was not taken


async def test_a_renewed_certificate_reaches_the_running_engine(
    hub: RunningHub, tmp_path: Path, nursery: trio.Nursery
) -> None:
    a = await enrolled(hub, tmp_path / "a", "edge-a")
    b = await enrolled(hub, tmp_path / "b", "edge-b")
    version = synthetic_version("renew", pieces=2)
    node_a = await engine_of(nursery, a, version)
    old = a.certificate.serial
    assert await a.renew_once(time.time()), a.last_error
    assert a.certificate.serial != old
    # The old certificate revoked at the hub: a peer holding that list admits a only with
    # the renewed one, which the running engine now presents.
    async with hub.client(hub.admin) as admin:
        r = await admin.post("/v1/fleet/revocations", json={"serial": old})
    assert r.status_code == 200
    assert await b.fetch_once(time.time())
    node_b = await engine_of(nursery, b, version, node_a)
    await wait_for_peers([node_a, node_b], version, 1)
    assert node_b.engine.connected() == [node_a.engine.self_id]
    assert not refused_as(node_b, "was revoked")
