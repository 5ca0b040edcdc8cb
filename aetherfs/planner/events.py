"""What the planner is told (events) and what it answers (actions): plain values.

Time is never in an event: every entry point takes `now` (seconds, any epoch, only ever
compared and subtracted), so the agent's trio loop passes `trio.current_time()` and the
simulator its own clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aetherfs.core.ids import ManifestId
from aetherfs.planner.bitfield import Bitfield
from aetherfs.planner.ids import PeerId, PieceRef, Source
from aetherfs.planner.pieces import PieceTable


# Events -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VersionWanted:
    """Fetch the pieces of `table` not in `held` (pieces this agent already has: its cache,
    a version on disk). Pieces in `store_only` are never asked of peers (those holding a block
    the peer protocol does not carry: `PieceTable.with_blocks_over(MAX_BLOCK_SIZE)`). Higher
    `priority` versions get peers and store reads first. Told again, only the priority
    changes."""

    table: PieceTable
    held: Bitfield | None = None
    priority: int = 0
    store_only: Bitfield | None = None


@dataclass(frozen=True, slots=True)
class VersionDropped:
    """Stop fetching a version (the subscription moved on): its requests are cancelled."""

    version: ManifestId


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """A peer connected and authenticated; `bitfields` are the versions it announced."""

    peer: PeerId
    bitfields: Mapping[ManifestId, Bitfield] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PeerBitfield:
    """A peer announced a version whole (also when it starts to want one: an empty field)."""

    peer: PeerId
    version: ManifestId
    bitfield: Bitfield


@dataclass(frozen=True, slots=True)
class PeerHave:
    """A peer verified more pieces of a version (announcements may be batched)."""

    peer: PeerId
    version: ManifestId
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PieceArrived:
    """Every block of a piece arrived from `source`, verified and kept."""

    piece: PieceRef
    source: Source


@dataclass(frozen=True, slots=True)
class PieceFailed:
    """A peer did not deliver a piece: refused, broke off, or (`bad_block`) sent a block that
    does not match its id, after which the peer is dropped and avoided."""

    piece: PieceRef
    peer: PeerId
    bad_block: bool = False


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """A store read of a piece failed (after the store client's own retries)."""

    piece: PieceRef


@dataclass(frozen=True, slots=True)
class PeerGone:
    """A peer's connection closed or discovery lost it; its requests are asked of others."""

    peer: PeerId


Event = (
    VersionWanted
    | VersionDropped
    | PeerJoined
    | PeerBitfield
    | PeerHave
    | PieceArrived
    | PieceFailed
    | StoreFailed
    | PeerGone
)


# Actions ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Assign:
    """Fetch `piece` (`size` bytes from a peer, or `PieceTable.read` from the store) from
    `source`. A peer request missed by `deadline` is cancelled and asked of another."""

    piece: PieceRef
    source: Source
    size: int
    deadline: float | None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Abandon a request made earlier: another source has the piece, or it was too late."""

    piece: PieceRef
    source: Source


@dataclass(frozen=True, slots=True)
class DropPeer:
    """Close the connection to a peer and accept none from it again (it sent a bad block)."""

    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True)
class GaveUp:
    """No source could deliver this piece: the version cannot be built now."""

    piece: PieceRef
    reason: str


Action = Assign | Cancel | DropPeer | GaveUp
