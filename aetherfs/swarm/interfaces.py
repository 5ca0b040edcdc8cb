"""The seams between the engine and the agent: what it serves from, what it reads the store
with, and where the blocks it fetched go. All three are blocking (disk, S3); the engine calls
them on worker threads behind one `trio.CapacityLimiter`, never on the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aetherfs.core.ids import BlockId
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import PieceTable

StoredBlocks = list[tuple[BlockId, bytes]]


class BlockStore(Protocol):
    """What the agent holds (its cache, its trees): peers are served from here."""

    def has(self, block_id: BlockId) -> bool:
        """Whether `read` can return this block."""
        ...

    def read(self, block_ids: Sequence[BlockId]) -> list[bytes]:
        """The stored bytes of each block, in order, verified against their ids. Raises an
        AetherError (NotFound, LocalIOError) if one cannot be read: the request is refused."""
        ...


class StoreReader(Protocol):
    """The store (S3, a local directory): one ranged GET per piece."""

    def read_piece(self, table: PieceTable, index: int) -> StoredBlocks:
        """Every block of piece `index` as stored bytes (`PieceTable.read(index)`, cut with
        `PieceTable.cut(..., ranged=True)`). Raises an AetherError when the store fails
        (after its own retries); the engine checks every id itself."""
        ...


class BlockSink(Protocol):
    """Where verified blocks go: the agent writes them into its tree or cache, so that
    `BlockStore.read` returns them once this returns (the piece is then announced)."""

    def __call__(self, table: PieceTable, index: int, blocks: StoredBlocks) -> None: ...


@dataclass(frozen=True, slots=True)
class AddressGone:
    """Discovery lost an agent: stop dialling it (a live connection ends on its own)."""

    address: PeerAddress


AddressEvent = PeerAddress | AddressGone
"""What the engine's address channel carries: a peer seen (dial it) or gone."""
