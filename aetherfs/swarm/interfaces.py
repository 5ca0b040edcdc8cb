"""The seams between the engine and the agent: what it serves from (blocks, and records such
as sealed manifests), what it reads the store with, and where the blocks it fetched go. All
are blocking (disk, S3); the engine calls them on worker threads behind a
`trio.CapacityLimiter`, never on the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import Bitfield, PeerId, PieceTable
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


class RecordSource(Protocol):
    """The records the agent holds and serves to peers that proved the dataset."""

    def sealed_manifest(self, dataset: AccessId, manifest_id: ManifestId) -> bytes | None:
        """The sealed (stored) bytes of one of `dataset`'s manifests, or None if not held.
        The engine sends them as they are: the asking peer checks them whole."""
        ...


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A record a peer sent whole: untrusted until the caller verified it (a manifest: its
    id, its seal, its entries). One that fails is reported with `record_refused`."""

    peer: PeerId
    data: bytes


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

    async def fetch_manifest(
        self, dataset: AccessId, manifest_id: ManifestId, timeout: float
    ) -> PeerRecord | None:
        """A version's sealed manifest from a peer that proved `dataset` (those that
        announced the version first), one peer at a time; None if none sent it in time."""
        ...

    def record_refused(self, peer: PeerId, why: str) -> None:
        """The caller found a record `peer` sent false: counted against the peer."""
        ...

    def add_dataset(self, access: DatasetAccess) -> None: ...

    def status(self) -> EngineStatus: ...
