"""Agent enrolment: a join token, once, for a certificate peers verify offline; expiry and
revocation (a signed list agents can gossip)."""

from __future__ import annotations

import base64
import time

import pytest
import trio
from nacl.signing import SigningKey

from aetherfs.errors import Forbidden, IntegrityError
from aetherfs.hub.fleet import AgentCertificate, RevocationList, fleet_signing_key
from tests.hub.helpers import RunningHub


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
