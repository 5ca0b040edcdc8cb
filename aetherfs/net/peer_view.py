"""The merged view of the peers an agent knows, from every source (pure: time is an argument).

Reports come from mDNS, static peers and hub hints; all are confirmed the same way (a unicast
DNS-SD answer, see dns_sd.py) and merged by agent id. A peer is gone when it says goodbye, or when
nothing was heard from it for `gone_after` seconds (a killed agent sends no goodbye); the
transport may vouch for a peer it is trading with (`heard`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from aetherfs.net.dns_sd import ServiceRecord
from aetherfs.net.ids import AgentId, FleetId


class Source(StrEnum):
    MDNS = "mdns"
    STATIC = "static"
    HUB = "hub"


@dataclass(frozen=True, slots=True)
class PeerSeen:
    """A peer of our fleet appeared, or its addresses, port, version or incarnation changed."""

    agent_id: AgentId
    fleet_id: FleetId
    protocol_version: int
    addresses: tuple[str, ...]
    port: int
    source: Source


@dataclass(frozen=True, slots=True)
class PeerGone:
    """A peer left: `goodbye` (it said so), `silent` (not heard for gone_after) or `restarted`."""

    agent_id: AgentId
    reason: str


PeerEvent = PeerSeen | PeerGone


@dataclass(frozen=True, slots=True)
class Peer:
    record: ServiceRecord
    sources: frozenset[Source]
    last_heard: float


class PeerView:
    def __init__(self, me: AgentId, fleet: FleetId, gone_after: float) -> None:
        self.me = me
        self.fleet = fleet
        self.gone_after = gone_after
        self._peers: dict[AgentId, Peer] = {}

    @property
    def peers(self) -> dict[AgentId, Peer]:
        return dict(self._peers)

    def observe(self, record: ServiceRecord, source: Source, now: float) -> list[PeerEvent]:
        """A peer answered; peers of another fleet, and this agent itself, are ignored."""
        if record.fleet_id != self.fleet or record.agent_id == self.me:
            return []
        old = self._peers.get(record.agent_id)
        events: list[PeerEvent] = []
        if old is not None and old.record.incarnation != record.incarnation:
            events.append(PeerGone(record.agent_id, "restarted"))
            old = None
        if old is None:
            self._peers[record.agent_id] = Peer(record, frozenset({source}), now)
            return [*events, _seen(record, source)]
        self._peers[record.agent_id] = Peer(record, old.sources | {source}, now)
        return [] if old.record == record else [_seen(record, source)]

    def heard(self, agent_id: AgentId, now: float) -> None:
        peer = self._peers.get(agent_id)
        if peer is not None:
            self._peers[agent_id] = replace(peer, last_heard=max(peer.last_heard, now))

    def goodbye(self, agent_id: AgentId) -> list[PeerEvent]:
        if self._peers.pop(agent_id, None) is None:
            return []
        return [PeerGone(agent_id, "goodbye")]

    def expire(self, now: float) -> list[PeerEvent]:
        silent = [a for a, p in self._peers.items() if now - p.last_heard > self.gone_after]
        for agent_id in silent:
            del self._peers[agent_id]
        return [PeerGone(a, "silent") for a in silent]

    def next_deadline(self) -> float | None:
        """When the next peer goes silent unless heard from first."""
        if not self._peers:
            return None
        return min(p.last_heard for p in self._peers.values()) + self.gone_after


def _seen(record: ServiceRecord, source: Source) -> PeerSeen:
    return PeerSeen(
        record.agent_id,
        record.fleet_id,
        record.protocol_version,
        record.addresses,
        record.port,
        source,
    )
