"""In-memory parts behind the engine's seams, and synthetic versions of real sealed blocks:
for the demo processes, the benchmark and the tests. The blocks are real (sealed with
`seal_block`, addressed by BLAKE3), the packs are bytes in a dict; only S3 is stood in for."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from aetherfs.core.blocks import BlockRef, seal_block
from aetherfs.core.ids import BlockId, ManifestId, PackId
from aetherfs.errors import NotFound, StoreUnavailable
from aetherfs.planner import PieceTable
from aetherfs.protocol.admission import DatasetAccess
from aetherfs.swarm.interfaces import StoredBlocks


@dataclass(frozen=True, slots=True)
class SyntheticVersion:
    """A version of `pieces` pieces, its blocks sealed for real, packed in memory."""

    table: PieceTable
    refs: tuple[BlockRef, ...]
    packs: dict[PackId, bytes]
    access: DatasetAccess

    @property
    def stored(self) -> dict[BlockId, bytes]:
        out: dict[BlockId, bytes] = {}
        for ref in self.refs:
            assert ref.pack is not None
            out[ref.id] = self.packs[ref.pack][ref.offset : ref.offset + ref.stored_size]
        return out


def synthetic_version(
    seed: str,
    pieces: int = 16,
    blocks_per_piece: int = 4,
    block_size: int = 16 * 1024,
    pack_pieces: int = 8,
) -> SyntheticVersion:
    """The same version for the same arguments, in every process: incompressible blocks
    (BLAKE3 output), `blocks_per_piece` to a piece, `pack_pieces` pieces to a pack."""
    secret = blake3.blake3(b"demo convergence " + seed.encode()).digest()
    refs: list[BlockRef] = []
    packs: dict[PackId, bytes] = {}
    per_pack = blocks_per_piece * pack_pieces
    total = pieces * blocks_per_piece
    for first in range(0, total, per_pack):
        sealed = [
            seal_block(
                blake3.blake3(f"{seed} block {n}".encode()).digest(length=block_size), secret
            )
            for n in range(first, min(first + per_pack, total))
        ]
        pack = b"".join(s.stored for s in sealed)
        pack_id = PackId(blake3.blake3(pack).digest())
        packs[pack_id] = pack
        offset = 0
        for s in sealed:
            refs.append(s.ref.located(pack_id, offset))
            offset += s.ref.stored_size
    piece_bytes = blocks_per_piece * (block_size + 64)  # a piece is exactly this many blocks
    manifest = ManifestId(blake3.blake3(b"demo manifest " + seed.encode()).digest())
    table = PieceTable.of_refs(manifest, refs, piece_bytes)
    access = DatasetAccess.from_dataset_key(
        blake3.blake3(b"demo dataset " + seed.encode()).digest()
    )
    return SyntheticVersion(table, tuple(refs), packs, access)


class MemoryStore:
    """A StoreReader over packs in memory that counts its reads (and may be slow)."""

    def __init__(self, packs: dict[PackId, bytes], delay: float = 0.0) -> None:
        self.packs = packs
        self.delay = delay
        self.reads: Counter[tuple[ManifestId, int]] = Counter()
        self._lock = threading.Lock()

    def read_piece(self, table: PieceTable, index: int) -> StoredBlocks:
        with self._lock:
            self.reads[table.id, index] += 1
        if self.delay:
            time.sleep(self.delay)
        read = table.read(index)
        pack = self.packs.get(read.pack)
        if pack is None:
            raise StoreUnavailable(f"pack {read.pack.short()} is not in this store")
        return list(table.cut(index, pack[read.start : read.start + read.length], ranged=True))

    @property
    def total_reads(self) -> int:
        with self._lock:
            return sum(self.reads.values())


class NoStore:
    """A StoreReader for an agent that may only fetch from peers."""

    def read_piece(self, table: PieceTable, index: int) -> StoredBlocks:
        raise StoreUnavailable("this agent has no store: it fetches from peers only")


class MemoryBlocks:
    """A BlockStore and BlockSink in one dict: what an agent holds."""

    def __init__(self, blocks: dict[BlockId, bytes] | None = None) -> None:
        self.blocks = dict(blocks or {})
        self.sunk = 0  # blocks written by the sink
        self._lock = threading.Lock()

    def has(self, block_id: BlockId) -> bool:
        with self._lock:
            return block_id in self.blocks

    def read(self, block_ids: Sequence[BlockId]) -> list[bytes]:
        with self._lock:
            try:
                return [self.blocks[b] for b in block_ids]
            except KeyError as exc:
                raise NotFound(f"block {exc.args[0].short()} is not held here") from None

    def __call__(self, table: PieceTable, index: int, blocks: StoredBlocks) -> None:
        with self._lock:
            for block_id, stored in blocks:
                self.blocks[block_id] = bytes(stored)
            self.sunk += len(blocks)
