"""Engines on loopback in one trio process, each on its own port, with in-memory seams."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from nacl.signing import SigningKey

from aetherfs.core.blocks import open_block
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import BandwidthPolicy, FetchPlanner, PeerId, PlannerConfig, UploadScheduler
from aetherfs.protocol.admission import Admission, FleetSecret
from aetherfs.protocol.connection import PeerConfig
from aetherfs.swarm import EngineConfig, StoreReader, SwarmEngine
from aetherfs.swarm.engine import OnAnnounce
from aetherfs.swarm.interfaces import AddressEvent, RecordSource
from aetherfs.swarm.memory import MemoryBlocks, SyntheticVersion

FLEET = FleetSecret(bytes(range(32)))
# Short timers so a vanished or slow peer costs a test a second, not ten.
FAST = PlannerConfig(peer_timeout=0.3, peer_min_rate=2_000_000.0, owner_patience=1.0)


@dataclass
class Node:
    engine: SwarmEngine
    blocks: MemoryBlocks
    scope: trio.CancelScope
    holds: bool

    @property
    def address(self) -> PeerAddress:
        return PeerAddress("127.0.0.1", self.engine.port)


async def start_node(
    nursery: trio.Nursery,
    store: StoreReader,
    version: SyntheticVersion,
    *,
    holds: bool = False,
    peers: Sequence[PeerAddress] = (),
    fleet: Admission = FLEET,
    identity: SigningKey | None = None,
    wall_clock: Callable[[], float] = time.time,
    planner: PlannerConfig = FAST,
    blocks: MemoryBlocks | None = None,
    name: str = "agent",
    port: int = 0,
    upload_cap: float | None = None,
    knows_dataset: bool = True,
    addresses: trio.MemoryReceiveChannel[AddressEvent] | None = None,
    on_announce: OnAnnounce | None = None,
    records: RecordSource | None = None,
    **peer_overrides: Any,
) -> Node:
    identity = identity or SigningKey.generate()
    peer_config = PeerConfig(identity, fleet, agent=name, **peer_overrides)
    held = blocks or MemoryBlocks(version.stored if holds else None)
    now = trio.current_time()
    engine = SwarmEngine(
        EngineConfig(listen_port=port, static_peers=tuple(peers), redial_min=0.2),
        peer_config,
        [version.access] if knows_dataset else [],
        FetchPlanner(PeerId(bytes(identity.verify_key)), planner, now=now),
        UploadScheduler(bandwidth=BandwidthPolicy(peer_upload=upload_cap), now=now),
        held,
        store,
        held,
        on_announce=on_announce,
        wall_clock=wall_clock,
        records=records,
    )
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await engine.run(addresses, task_status=task_status)

    await nursery.start(run)
    if holds:
        await engine.offer(version.table, version.access.access_id)
    return Node(engine, held, scope, holds)


async def wait_for_peers(
    nodes: Sequence[Node], version: SyntheticVersion, count: int, timeout: float = 5.0
) -> None:
    """Until every node has `count` open peers that proved the version's dataset to it, and
    those holding the version have announced it."""
    dataset = version.access.access_id
    holders = {n.engine.self_id for n in nodes if n.holds}

    def ready(node: Node) -> bool:
        peers = node.engine.connected(dataset)
        announced = set(node.engine.announced(version.table.id))
        return len(peers) >= count and holders & set(peers) <= announced

    with trio.fail_after(timeout):
        while not all(ready(n) for n in nodes):
            await trio.sleep(0.01)


def assert_holds_all(node: Node, version: SyntheticVersion) -> None:
    """Every block of the version is held, and opens (id, decryption, plaintext digest)."""
    for ref in version.refs:
        got = node.blocks.blocks.get(ref.id)
        assert got is not None, f"{ref.id.short()} missing"
        open_block(ref, got)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Until `check()` holds (polled), or fail after `timeout` seconds."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


def refused_as(node: Node, text: str) -> bool:
    """Whether the node refused a handshake (not admitted) for a reason saying `text`."""
    return any(r.reason == "not_admitted" and text in r.text for r in node.engine.status().refused)
