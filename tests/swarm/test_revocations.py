"""Engines admitted by hub certificates on loopback: a revocation list in force at once on
every connection and passed from peer to peer, and a renewed certificate presented by new
connections without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from aetherfs.core.fleet_certs import AgentCertificate
from aetherfs.planner import PeerId
from aetherfs.protocol.admission import FleetCertificate
from aetherfs.protocol.connection import PeerConfig
from aetherfs.protocol.events import RevocationsUpdated
from aetherfs.swarm.engine import RevocationNews
from aetherfs.swarm.memory import MemoryStore, SyntheticVersion, synthetic_version
from tests.protocol.helpers import Fleet
from tests.swarm.helpers import Node, refused_as, start_node, until, wait_for_peers

HOUR = 3600.0


async def node(
    nursery: trio.Nursery,
    version: SyntheticVersion,
    config: PeerConfig,
    peers: list[Node] = (),  # type: ignore[assignment]
    wall_clock: Callable[[], float] = time.time,
) -> Node:
    return await start_node(
        nursery,
        MemoryStore(version.packs),
        version,
        peers=[p.address for p in peers],
        fleet=config.admission,
        identity=config.identity,
        wall_clock=wall_clock,
    )


async def test_a_revocation_closes_the_revoked_peer_at_once_and_spreads_to_peers() -> None:
    fleet, version = Fleet(), synthetic_version("revoked", pieces=2)
    (a_config, _), (b_config, b_cert), (c_config, _) = (
        fleet.member(expires=time.time() + HOUR) for _ in range(3)
    )
    async with trio.open_nursery() as nursery:
        a = await node(nursery, version, a_config)
        b = await node(nursery, version, b_config, [a])
        c = await node(nursery, version, c_config, [a, b])
        await wait_for_peers([a, b, c], version, 2)
        b_id = b.engine.self_id
        heard: list[tuple[PeerId | None, RevocationNews]] = []
        c.engine.on_revocations(lambda peer, news: heard.append((peer, news)))

        # a learns the list (from its hub, say): its link to b is closed before it returns.
        listed = fleet.revocations(1, b_cert.serial)
        assert a.engine.update_revocations(listed)
        assert b_id not in a.engine.connected()
        assert not a.engine.update_revocations(listed)  # not newer the second time

        # c never asked anyone: a passes it the list, and c drops b too.
        await until(lambda: b_id not in c.engine.connected())
        assert [(p, n.seq) for p, n in heard if isinstance(n, RevocationsUpdated)] == [
            (a.engine.self_id, 1)
        ]
        # b dials again and again; both refuse its handshakes now.
        await until(lambda: refused_as(c, "was revoked") and refused_as(a, "was revoked"))
        await trio.sleep(0.5)
        assert b_id not in a.engine.connected() and b_id not in c.engine.connected()
        assert c.engine.connected() == [a.engine.self_id]
        nursery.cancel_scope.cancel()


async def test_a_renewed_certificate_is_presented_by_new_connections() -> None:
    fleet, version = Fleet(), synthetic_version("renewed", pieces=2)
    wall = [time.time()]

    def clock() -> float:
        return wall[0]

    a_config, a_cert = fleet.member(expires=wall[0] + 60)
    b_config, _ = fleet.member(expires=wall[0] + HOUR)
    c_config, _ = fleet.member(expires=wall[0] + HOUR)
    async with trio.open_nursery() as nursery:
        a = await node(nursery, version, a_config, wall_clock=clock)
        b = await node(nursery, version, b_config, [a], wall_clock=clock)
        await wait_for_peers([a, b], version, 1)

        wall[0] += 120  # a's certificate has expired: a new peer refuses it
        c = await node(nursery, version, c_config, [a], wall_clock=clock)
        await until(lambda: refused_as(c, "has expired"))
        assert c.engine.connected() == []

        renewed = AgentCertificate(
            fleet.name, "edge", a_cert.key, "renewed", wall[0] - 1, wall[0] + HOUR
        )
        assert isinstance(a_config.admission, FleetCertificate)
        a.engine.set_admission(
            FleetCertificate(fleet.name, a_config.admission.fleet_public, renewed.sign(fleet.key))
        )
        await until(lambda: c.engine.connected() == [a.engine.self_id])
        peer = next(p for p in c.engine.status().peers if p.peer == a.engine.self_id)
        assert peer.state == "open"
        # The connection made before renewal stays as it was.
        assert a.engine.connected() == sorted([b.engine.self_id, c.engine.self_id])
        nursery.cancel_scope.cancel()
