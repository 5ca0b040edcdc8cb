"""The engine's counters, as frozen values for `aetherfs status` and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from aetherfs.core.ids import ManifestId
from aetherfs.planner import PeerId


@dataclass(slots=True)
class PeerCounters:
    """One peer over the engine's life (all its connections)."""

    peer: PeerId
    agent: str
    address: str
    state: str  # "open", "gone", "banned"
    bytes_sent: int = 0
    bytes_received: int = 0
    errors: int = 0  # connections that ended in an error
    last_error: str = ""
    last_seen: float = 0.0  # trio clock

    def frozen(self) -> PeerCounters:
        return PeerCounters(
            self.peer,
            self.agent,
            self.address,
            self.state,
            self.bytes_sent,
            self.bytes_received,
            self.errors,
            self.last_error,
            self.last_seen,
        )


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """A connection that never got past the handshake (refused, timed out, not a peer)."""

    address: str
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class VersionCounters:
    version: ManifestId
    pieces: int
    pieces_needed: int
    bytes_needed: int
    bytes_from_store: int  # store egress, gaps included
    bytes_from_peers: int
    store_reads: int
    complete: bool


@dataclass(frozen=True, slots=True)
class EngineStatus:
    port: int
    connections: int  # open sockets, handshakes included
    peers: tuple[PeerCounters, ...]
    refused: tuple[LinkStatus, ...]  # the latest handshakes that failed
    versions: tuple[VersionCounters, ...]
    uploads_running: int
