"""Peer hints from the hub (`GET /v1/fleet/peers`, docs/hub.md "Peer hints"): agents report
where their peer protocol listens, and each gets the other fresh agents of its own fleet, never
itself, a silent one, a revoked one nor another fleet's; through the REST API of a real hub and
through `HubClient.peer_hints`."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import trio
from nacl.signing import SigningKey

from aetherfs.hub import peers
from aetherfs.hub.peers import PeerRecord, _Cert
from aetherfs.repository.hub_client import HubClient, PeerHint
from tests.hub.helpers import RunningHub

FLEET, OTHER = "fleet-a", "fleet-b"


def report(address: str, port: int, fleet: str = FLEET) -> dict[str, Any]:
    return {"subscriptions": [], "peer": {"addresses": [address], "port": port, "fleet": fleet}}


async def put(c: httpx.AsyncClient, agent: str, body: dict[str, Any]) -> httpx.Response:
    return await c.put(f"/v1/agents/{agent}/status", json=body)


async def hints(c: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    r = await c.get("/v1/fleet/peers", params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def named(doc: dict[str, Any]) -> dict[str, tuple[list[str], int]]:
    return {p["agent"]: (p["addresses"], p["port"]) for p in doc["peers"]}


async def enrol(hub: RunningHub, agent: str) -> dict[str, Any]:
    public = bytes(SigningKey.generate().verify_key).hex()
    async with hub.client(hub.admin) as admin, hub.client() as anon:
        join = (await admin.post("/v1/fleet/join-tokens", json={"ttl_seconds": 600})).json()
        body = {"join_token": join["join_token"], "agent": agent, "public_key": public}
        r = await anon.post("/v1/fleet/enrol", json=body)
    assert r.status_code == 201, r.text
    issued: dict[str, Any] = r.json()
    return issued


async def test_each_agent_gets_the_other_fresh_agents_of_its_fleet(hub: RunningHub) -> None:
    enrolled = await enrol(hub, "gamma")
    tokens = {
        "alpha": hub.token("alpha", "agent"),
        "beta": hub.token("beta", "agent"),
        "gamma": enrolled["token"],
        "delta": hub.token("delta", "agent"),
        "omega": hub.token("omega", "agent"),
    }
    clients = {name: hub.client(token) for name, token in tokens.items()}
    a, b, g, d, o = (clients[n] for n in ("alpha", "beta", "gamma", "delta", "omega"))
    try:
        for i, name in enumerate(("alpha", "beta", "gamma", "delta"), start=1):
            r = await put(clients[name], name, report(f"10.0.0.{i}", 7000 + i))
            assert r.status_code == 204, r.text
        assert (await put(o, "omega", report("10.9.0.1", 7100, OTHER))).status_code == 204
        # delta last reported three minutes ago: as the store holds it after that silence.
        key = peers.record_key("delta")
        held = json.loads(hub.repo.store.get(key))
        hub.repo.store.put(key, json.dumps({**held, "received": time.time() - 180}).encode())

        seen = {name: named(await hints(clients[name])) for name in ("alpha", "beta", "gamma")}
        assert seen["alpha"] == {"beta": (["10.0.0.2"], 7002), "gamma": (["10.0.0.3"], 7003)}
        assert set(seen["beta"]) == {"alpha", "gamma"} and set(seen["gamma"]) == {"alpha", "beta"}
        doc = await hints(a)
        assert doc["fleet"] == FLEET and doc["fresh_seconds"] == peers.FRESH_SECONDS
        # Another fleet's agent sees none of these, nor they it; the silent one sees the rest.
        assert named(await hints(o)) == {}
        assert set(named(await hints(d))) == {"alpha", "beta", "gamma"}

        # delta reports again: back at once; gamma's certificate is revoked: gone at once.
        assert (await put(d, "delta", report("10.0.0.4", 7004))).status_code == 204
        assert set(named(await hints(a))) == {"beta", "gamma", "delta"}
        async with hub.client(hub.admin) as admin:
            r = await admin.post("/v1/fleet/revocations", json={"serial": enrolled["serial"]})
            assert r.status_code == 200, r.text
            assert set(named(await hints(a))) == {"beta", "delta"}
            assert set(named(await hints(b))) == {"alpha", "delta"}
            # An agent put out of the fleet learns nothing of it any more.
            r = await g.get("/v1/fleet/peers")
            assert r.status_code == 403 and "revoked" in r.json()["error"]["message"]
            # A hub admin names the fleet; an agent may name only its own.
            assert set(named(await hints(admin, fleet=FLEET))) == {"alpha", "beta", "delta"}
            assert set(named(await hints(admin, fleet=OTHER))) == {"omega"}
            assert (await hints(admin))["peers"] == []
        assert set(named(await hints(a, fleet=FLEET))) == {"beta", "delta"}
        assert (await a.get("/v1/fleet/peers", params={"fleet": OTHER})).status_code == 403
    finally:
        for c in clients.values():
            await c.aclose()


async def test_who_may_ask_and_what_a_report_may_say(hub: RunningHub) -> None:
    async with hub.client() as anon, hub.client(hub.token("rita")) as user:
        r = await anon.get("/v1/fleet/peers")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
        r = await user.get("/v1/fleet/peers")  # a user who is no hub admin
        assert r.status_code == 403
    async with hub.client(hub.token("alpha", "agent")) as a:
        doc = await hints(a)  # no `peer` reported yet: no fleet, nobody
        assert doc["fleet"] is None and doc["peers"] == []
        bad = [
            {"addresses": ["0.0.0.0"], "port": 7000, "fleet": FLEET},
            {"addresses": ["fe80::1"], "port": 7000, "fleet": FLEET},
            {"addresses": ["10.0.0.1"], "port": 0, "fleet": FLEET},
            {"addresses": ["10.0.0.1"], "port": "7000", "fleet": FLEET},
            {"addresses": [], "port": 7000, "fleet": FLEET},
            {"addresses": [f"10.0.0.{i}" for i in range(9)], "port": 7000, "fleet": FLEET},
            {"addresses": ["10.0.0.1"], "port": 7000, "fleet": "no spaces"},
            {"addresses": "10.0.0.1", "port": 7000, "fleet": FLEET},
        ]
        for peer in bad:
            r = await put(a, "alpha", {"peer": peer})
            assert r.status_code == 400, peer
            assert "report peer" in r.json()["error"]["message"]
        assert not hub.repo.store.exists(peers.record_key("alpha"))
        # Fields a newer agent adds are ignored; the same address twice is kept once.
        peer = {"addresses": ["10.0.0.1", "10.0.0.1"], "port": 7000, "fleet": FLEET, "v": 2}
        assert (await put(a, "alpha", {"peer": peer})).status_code == 204
        held = json.loads(hub.repo.store.get(peers.record_key("alpha")))
        assert held["addresses"] == ["10.0.0.1"] and "v" not in held


async def test_hub_client_returns_address_port_pairs(hub: RunningHub) -> None:
    async with hub.client(hub.token("beta", "agent")) as b:
        body = {"peer": {"addresses": ["10.0.0.2", "192.168.1.2"], "port": 7002, "fleet": FLEET}}
        assert (await put(b, "beta", body)).status_code == 204
    client = HubClient(hub.url, hub.token("alpha", "agent"))
    try:
        assert await trio.to_thread.run_sync(client.peer_hints) == []  # not reported yet
        body = {"peer": {"addresses": ["10.0.0.1"], "port": 7001, "fleet": FLEET}}
        await trio.to_thread.run_sync(
            lambda: client.request("PUT", "/v1/agents/alpha/status", json=body)
        )
        found = await trio.to_thread.run_sync(client.peer_hints)
    finally:
        client.close()
    assert found == [PeerHint("10.0.0.2", 7002), PeerHint("192.168.1.2", 7002)]


async def test_the_route_is_in_the_document(hub: RunningHub) -> None:
    async with hub.client() as c:
        doc = (await c.get("/v1/openapi.json")).json()
    get = doc["paths"]["/v1/fleet/peers"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/PeerHints"}
    assert "PeerHint" in doc["components"]["schemas"]


# The choice itself, pure --------------------------------------------------------------------
def record(agent: str, received: float = 1000.0, fleet: str = FLEET) -> PeerRecord:
    return PeerRecord(agent, fleet, ("10.0.0.1",), 7000, received)


def test_over_the_limit_each_caller_gets_a_stable_share_and_together_all() -> None:
    fleet = [record(f"agent-{i:03}") for i in range(200)]
    picked = {
        caller: [r.agent for r in peers.choose(fleet, FLEET, caller, frozenset(), 1000.0)]
        for caller in ("agent-000", "agent-001", "agent-002", "agent-003")
    }
    assert all(len(p) == peers.MAX_HINTS for p in picked.values())
    assert all(caller not in p for caller, p in picked.items())
    again = peers.choose(list(reversed(fleet)), FLEET, "agent-000", frozenset(), 1000.0)
    assert [r.agent for r in again] == picked["agent-000"]  # the same set each time
    assert picked["agent-000"] != picked["agent-001"]
    everyone = {a for p in picked.values() for a in p}
    assert len(everyone) > 2 * peers.MAX_HINTS  # shares differ: the fleet stays connected


def test_fresh_means_within_the_window_either_side() -> None:
    held = [record("old", 1000.0 - 121), record("edge", 1000.0 - 120), record("ahead", 1000 + 500)]
    found = peers.choose(held, FLEET, None, frozenset(), 1000.0)
    assert [r.agent for r in found] == ["edge"]


def test_left_out_are_enrolled_agents_without_a_good_certificate() -> None:
    certs = [
        ("s1", _Cert("renewed", 2000.0)),  # revoked, but renewed as s2
        ("s2", _Cert("renewed", 3000.0)),
        ("s3", _Cert("revoked", 3000.0)),
        ("s4", _Cert("lapsed", 500.0)),  # expired, never renewed
        ("s5", _Cert("fine", 3000.0)),
    ]
    assert peers.left_out(certs, frozenset({"s1", "s3"}), 1000.0) == {"revoked", "lapsed"}
