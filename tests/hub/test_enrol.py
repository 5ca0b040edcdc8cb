"""Agent enrolment: a join token, once, for a certificate peers verify offline; renewal by
the agent itself; expiry and revocation (a signed list agents can gossip)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import trio
from nacl.signing import SigningKey

from aetherfs.core.fleet_certs import MAX_REVOCATIONS_SIZE
from aetherfs.errors import Conflict, Forbidden, IntegrityError, InvalidInput
from aetherfs.hub import layout
from aetherfs.hub.config import HubConfig
from aetherfs.hub.enrol import RENEWAL_CONTEXT, Enrolment
from aetherfs.hub.fleet import AgentCertificate, RevocationList, fleet_signing_key
from aetherfs.repository import StoreRepository
from tests.hub.helpers import RunningHub, start_hub


async def test_enrol_verify_offline_and_revoke(hub: RunningHub) -> None:
    agent_key = SigningKey.generate()
    public = bytes(agent_key.verify_key).hex()
    async with hub.client(hub.admin) as admin, hub.client() as anon:
        join = (await admin.post("/v1/fleet/join-tokens", json={"ttl_seconds": 600})).json()
        body = {"join_token": join["join_token"], "agent": "edge-1", "public_key": public}
        # Two agents racing with one join token: exactly one is enrolled.
        results: list[int] = []

        async def attempt() -> None:
            results.append((await anon.post("/v1/fleet/enrol", json=body)).status_code)

        async with trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(attempt)
        assert sorted(results) == [201, 401, 401]
        again = await anon.post("/v1/fleet/enrol", json=body)
        assert again.status_code == 401

        join2 = (await admin.post("/v1/fleet/join-tokens", json={})).json()
        issued = (
            await anon.post("/v1/fleet/enrol", json={**body, "join_token": join2["join_token"]})
        ).json()
        fleet = (await anon.get("/v1/fleet")).json()
        assert fleet["fleet_public_key"] == issued["fleet_public_key"]
        fleet_public = bytes.fromhex(fleet["fleet_public_key"])

        # A peer checks the certificate with nothing but the fleet's public key.
        signed = base64.b64decode(issued["certificate"])
        cert = AgentCertificate.verify(signed, fleet_public, time.time())
        assert (cert.agent, cert.key) == ("edge-1", bytes(agent_key.verify_key))
        with pytest.raises(Forbidden, match="expired"):
            AgentCertificate.verify(signed, fleet_public, cert.expires + 1)
        with pytest.raises(IntegrityError):
            AgentCertificate.verify(
                signed[:-1] + bytes([signed[-1] ^ 1]), fleet_public, time.time()
            )
        with pytest.raises(IntegrityError):
            other = bytes(SigningKey.generate().verify_key)
            AgentCertificate.verify(signed, other, time.time())
        assert fleet_signing_key(hub.repo.keyring).verify_key.encode() == fleet_public

        # The agent token it got lets it report its status.
        async with hub.client(issued["token"]) as agent:
            r = await agent.put("/v1/agents/edge-1/status", json={"ok": True})
            assert r.status_code == 204

        # Revoke every certificate of the agent: the signed list names them, tokens go too.
        revoked = await admin.post("/v1/fleet/revocations", json={"agent": "edge-1"})
        assert revoked.status_code == 200 and issued["serial"] in revoked.json()["serials"]
        await trio.sleep(0.4)  # the test hub caches tokens for 0.3 s
        async with hub.client(issued["token"]) as agent:
            listing = await agent.get("/v1/fleet/revocations")
        assert listing.status_code == 401  # its API token was revoked with it
        listing = (await admin.get("/v1/fleet/revocations")).json()
        held = RevocationList.verify(base64.b64decode(listing["signed"]), fleet_public)
        assert issued["serial"] in held.serials and held.seq == 1
        with pytest.raises(Forbidden, match="revoked"):
            AgentCertificate.verify(signed, fleet_public, time.time(), held.serials)
        assert held.newer(None) and not held.newer(held)


async def test_enrol_bad_input(hub: RunningHub) -> None:
    async with hub.client() as anon, hub.client(hub.token("rita")) as user:
        key = "ab" * 32
        assert (await user.post("/v1/fleet/join-tokens", json={})).status_code == 403
        for body, status in (
            ({"join_token": "afj_made-up", "agent": "edge-1", "public_key": key}, 401),
            ({"join_token": "nope", "agent": "edge-1", "public_key": key}, 401),
            ({"join_token": "afj_x", "agent": "Edge 1", "public_key": key}, 400),
            ({"join_token": "afj_x", "agent": "edge-1", "public_key": "zz"}, 400),
            ({"join_token": "afj_x", "agent": "edge-1", "public_key": "ab"}, 400),
            ({"agent": "edge-1"}, 400),
        ):
            r = await anon.post("/v1/fleet/enrol", json=body)
            assert r.status_code == status, body


# Renewal (docs/peers.md, "Renewal") -----------------------------------------------------


async def enrol_agent(hub: RunningHub, agent: str, key: SigningKey) -> dict[str, Any]:
    public = bytes(key.verify_key).hex()
    async with hub.client(hub.admin) as admin, hub.client() as anon:
        join = (await admin.post("/v1/fleet/join-tokens", json={"ttl_seconds": 600})).json()
        body = {"join_token": join["join_token"], "agent": agent, "public_key": public}
        issued: dict[str, Any] = (await anon.post("/v1/fleet/enrol", json=body)).json()
    return issued


def renewal_body(key: SigningKey, certificate_b64: str) -> dict[str, str]:
    signed = base64.b64decode(certificate_b64)
    signature = key.sign(RENEWAL_CONTEXT + signed).signature
    return {"certificate": certificate_b64, "signature": signature.hex()}


async def test_an_agent_renews_its_own_certificate(hub: RunningHub) -> None:
    key = SigningKey.generate()
    issued = await enrol_agent(hub, "edge-1", key)
    other_key = SigningKey.generate()
    other = await enrol_agent(hub, "edge-2", other_key)
    fleet_public = fleet_signing_key(hub.repo.keyring).verify_key.encode()
    old = AgentCertificate.verify(
        base64.b64decode(issued["certificate"]), fleet_public, time.time()
    )
    body = renewal_body(key, issued["certificate"])
    async with hub.client(issued["token"]) as agent:
        r = await agent.post("/v1/fleet/renew", json=body)
        assert r.status_code == 200, r.text
        renewed = r.json()
        assert "token" not in renewed and r.headers["cache-control"] == "no-store"
        fresh = AgentCertificate.verify(
            base64.b64decode(renewed["certificate"]), fleet_public, time.time()
        )
        assert (fresh.fleet, fresh.agent, fresh.key) == (old.fleet, "edge-1", old.key)
        assert fresh.serial == renewed["serial"] != old.serial and renewed["previous"] == old.serial
        assert fresh.expires > old.expires and renewed["fleet_public_key"] == fleet_public.hex()
        # The new certificate renews in turn; the old one still does until it expires.
        again = await agent.post("/v1/fleet/renew", json=renewal_body(key, renewed["certificate"]))
        assert again.status_code == 200

        # Signed by another key, over other bytes, or for another agent: refused in words.
        forged = renewal_body(other_key, issued["certificate"])
        r = await agent.post("/v1/fleet/renew", json=forged)
        assert r.status_code == 403 and "not signed by the certified key" in r.text
        r = await agent.post("/v1/fleet/renew", json={**body, "certificate": other["certificate"]})
        assert r.status_code == 403 and "edge-2" in r.text  # the body's own signature fails too
        r = await agent.post("/v1/fleet/renew", json=renewal_body(other_key, other["certificate"]))
        assert r.status_code == 403 and "an agent renews its own" in r.text
        bad = base64.b64decode(issued["certificate"])
        tampered = base64.b64encode(bad[:-1] + bytes([bad[-1] ^ 1])).decode()
        r = await agent.post("/v1/fleet/renew", json=renewal_body(key, tampered))
        assert r.status_code == 422 and "not signed by this fleet's key" in r.text
        r = await agent.post("/v1/fleet/renew", json={**body, "signature": "zz"})
        assert r.status_code == 400

    # Only the agent itself, with its API token.
    async with hub.client() as anon, hub.client(hub.admin) as admin:
        assert (await anon.post("/v1/fleet/renew", json=body)).status_code == 401
        r = await admin.post("/v1/fleet/renew", json=body)
        assert r.status_code == 403 and "an agent renews its own" in r.text
        entries = (await admin.get("/v1/audit")).json()
        renewals = [e for e in entries if e["action"] == "fleet.renew"]
        assert renewals[0]["subject"] == "agent:edge-1"
        assert renewals[0]["detail"] == {"serial": renewed["serial"], "previous": old.serial}

        # A revoked certificate is not renewed (and the agent's token went with it).
        r = await admin.post("/v1/fleet/revocations", json={"serial": old.serial})
        assert r.status_code == 200
    async with hub.client(issued["token"]) as agent:
        r = await agent.post("/v1/fleet/renew", json=body)
        assert r.status_code == 403 and "revoked" in r.text


async def test_the_certificate_lifetime_is_a_hub_setting(
    nursery: trio.Nursery, repo: StoreRepository
) -> None:
    config = HubConfig(listen="127.0.0.1:0", token_cache_seconds=0.3, cert_days=2 / 86400)
    hub = await start_hub(nursery, repo, config)
    key = SigningKey.generate()
    issued = await enrol_agent(hub, "edge-1", key)
    cert = AgentCertificate.verify(
        base64.b64decode(issued["certificate"]),
        fleet_signing_key(repo.keyring).verify_key.encode(),
        time.time(),
    )
    assert cert.expires - cert.issued == pytest.approx(2.0)
    await trio.sleep(cert.expires - time.time() + 0.1)
    async with hub.client(issued["token"]) as agent:
        r = await agent.post("/v1/fleet/renew", json=renewal_body(key, issued["certificate"]))
    assert r.status_code == 403 and "expired: enrol again" in r.text
    hub.cancel.cancel()
    with pytest.raises(InvalidInput, match="--cert-days"):
        HubConfig(cert_days=0)


async def test_the_revocation_list_stays_small_enough_for_peers_to_pass(hub: RunningHub) -> None:
    enrolment = Enrolment(hub.repo)
    serial = enrolment._issue("edge-1", bytes(32))["serial"]
    # A list one serial short of what one peer record carries (protocol/peer.md).
    serials = {f"{n:032x}" for n in range(7600)}
    while (
        len(
            RevocationList(enrolment.fleet_id, 1, 0.0, serials | {serial}).sign(enrolment.fleet_key)
        )
        <= MAX_REVOCATIONS_SIZE
    ):
        serials.add(f"{len(serials):032x}")
    full = RevocationList(enrolment.fleet_id, 1, 0.0, serials).sign(enrolment.fleet_key)
    assert len(full) <= MAX_REVOCATIONS_SIZE
    hub.repo.store.put(layout.REVOCATIONS, full)
    with pytest.raises(Conflict, match="over the 262,144 bytes peers carry"):
        enrolment.revoke(serial=serial)
    assert enrolment.revocations()[1] == full  # left as it was
