"""The seams between the engine and the agent: what it serves from, what it reads the store
with, and where the blocks it fetched go. All three are blocking (disk, S3); the engine calls
them on worker threads behind one `trio.CapacityLimiter`, never on the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from aetherfs.core.ids import BlockId
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import Bitfield, PieceTable
from aetherfs.protocol.admission import AccessId, DatasetAccess

if TYPE_CHECKING:
    from aetherfs.swarm.status import EngineStatus, VersionCounters

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


class Swarm(Protocol):
    """What the agent calls: `SwarmEngine`, or whatever stands in for it (a simulator)."""

    async def run(
        self,
        addresses: trio.MemoryReceiveChannel[AddressEvent] | None = None,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Trade until cancelled; `task_status.started` gets the listening port."""
        ...

    async def fetch(
        self, table: PieceTable, dataset: AccessId, held: Bitfield | None = None, priority: int = 0
    ) -> VersionCounters:
        """Every piece of `table` not `held`, verified and sunk (VersionFailed if not)."""
        ...

    async def offer(self, table: PieceTable, dataset: AccessId) -> Bitfield:
        """Serve a version the agent holds; returns the pieces it holds."""
        ...

    def add_dataset(self, access: DatasetAccess) -> None: ...

    def status(self) -> EngineStatus: ...
