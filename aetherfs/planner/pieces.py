"""Pieces: runs of a version's blocks that one ranged GET of one pack fetches.

The planner schedules pieces, not blocks: a 5 GiB version is about 1,300 pieces of 4 MiB
against 80,000 blocks of 64 KiB, so a peer's announcement is 160 bytes and a store read stays
one merged request. Every agent derives the same table from the same manifest: the version's
distinct block locations sorted by (pack id, offset) and cut exactly as `plan_reads` merges
reads (same pack, gaps of at most MERGE_GAP, a span of at most PIECE_BYTES). The order of
files in the manifest plays no part, and a block used many times is one block of one piece.

The table keeps fixed-size records in a few bytes objects and arrays, never one Python object
per block: 40 bytes per block, 40 per piece.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import blake3

from aetherfs.core.blocklist import as_block_list
from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import DIGEST_SIZE, BlockId, ManifestId, PackId
from aetherfs.core.manifest import FILE, Manifest
from aetherfs.core.packs import MERGE_GAP, MiB
from aetherfs.errors import IntegrityError
from aetherfs.planner.bitfield import Bitfield

# 4 MiB: a GET then costs 0.1% of the egress it carries (a GET is worth ~4 KB at AWS list
# prices), store reads were as fast as at 3 MiB (ops/materialise.py BATCH_BYTES measured 2, 3
# and 4 MiB within noise), and a 5 GiB version stays near 1,300 pieces: small enough that a
# bitfield is 160 bytes, large enough that per-piece bookkeeping is cheap, small enough that a
# piece crosses a 100 Mbit/s link in a third of a second, so peers can pass it on early.
# See docs/planner.md.
PIECE_BYTES = 4 * MiB

_BUILD = struct.Struct("<QI32s")  # while building: offset in pack, stored size, block id
_BLOCK = struct.Struct("<II32s")  # in the table: offset from the piece's start, size, id
BLOCK_RECORD = _BLOCK.size


@dataclass(frozen=True, slots=True)
class PieceBlock:
    """One block of a piece: where its stored bytes lie in the pack, and its id."""

    id: BlockId
    offset: int  # in the pack
    stored_size: int


@dataclass(frozen=True, slots=True)
class PieceRead:
    """The ranged GET that fetches a piece from the store."""

    pack: PackId
    start: int
    length: int


class PieceTable:
    """The pieces of one version, indexed 0..len-1, the same on every agent."""

    __slots__ = (
        "_blocks",
        "_first",
        "_largest",
        "_length",
        "_pack",
        "_packs",
        "_piece_bytes",
        "_size",
        "_start",
        "id",
    )

    def __init__(
        self,
        manifest: ManifestId,
        packs: list[PackId],
        pack_index: array[int],
        start: array[int],
        length: array[int],
        first: array[int],
        blocks: bytes,
        piece_bytes: int,
    ) -> None:
        self.id = manifest
        self._packs, self._pack, self._start, self._length = packs, pack_index, start, length
        self._first, self._blocks = first, blocks  # `first` has one more entry: the end
        self._size = array("Q", (self._payload(i) for i in range(len(start))))
        self._largest = array("I", (self._largest_block(i) for i in range(len(start))))
        self._piece_bytes = piece_bytes

    @classmethod
    def of_manifest(
        cls, manifest_id: ManifestId, manifest: Manifest, piece_bytes: int = PIECE_BYTES
    ) -> PieceTable:
        """The table of a whole (not delta) manifest, read a block record at a time."""
        if manifest.is_delta:
            raise ValueError("a piece table is made of a whole manifest; apply the delta first")
        builder = PieceTableBuilder(manifest_id, piece_bytes)
        for entry in manifest.files:
            if entry.kind != FILE:
                continue
            records = as_block_list(entry.blocks)
            for block_id, _key, _size, _digest, stored, pack, offset in records.wire_fields():
                builder.add(block_id, stored, pack, offset)
        return builder.finish()

    @classmethod
    def of_refs(
        cls, manifest_id: ManifestId, refs: Iterable[BlockRef], piece_bytes: int = PIECE_BYTES
    ) -> PieceTable:
        builder = PieceTableBuilder(manifest_id, piece_bytes)
        for ref in refs:
            builder.add(
                ref.id.digest, ref.stored_size, ref.pack.digest if ref.pack else None, ref.offset
            )
        return builder.finish()

    def __len__(self) -> int:
        return len(self._start)

    def size(self, index: int) -> int:
        """Stored bytes of the piece's blocks: what a peer sends for it."""
        return int(self._size[index])

    @property
    def sizes(self) -> array[int]:
        return self._size

    @property
    def total_size(self) -> int:
        return sum(self._size)

    def read(self, index: int) -> PieceRead:
        """The store read: the span from the first block to the end of the last, gaps included."""
        pack = self._packs[self._pack[index]]
        return PieceRead(pack, int(self._start[index]), int(self._length[index]))

    def blocks(self, index: int) -> list[PieceBlock]:
        start = int(self._start[index])
        return [
            PieceBlock(BlockId(block_id), start + rel, size)
            for rel, size, block_id in _BLOCK.iter_unpack(self._records(index))
        ]

    def block_count(self, index: int) -> int:
        return int(self._first[index + 1] - self._first[index])

    def cut(self, index: int, data: bytes, *, ranged: bool) -> Iterator[tuple[BlockId, bytes]]:
        """Each block's stored bytes out of a piece: `ranged` for what the store read returned
        (the span, gaps included), else the blocks end to end as a peer sends them."""
        expected = self._length[index] if ranged else self._size[index]
        if len(data) != expected:
            raise IntegrityError(
                f"piece {index} of {self.id.short()} is {len(data)} bytes, not {expected}"
            )
        at = 0
        for rel, size, block_id in _BLOCK.iter_unpack(self._records(index)):
            begin = rel if ranged else at
            yield BlockId(block_id), data[begin : begin + size]
            at += size

    def fingerprint(self) -> bytes:
        """BLAKE3 of the table's definition: two agents whose fingerprints match cut alike."""
        hasher = blake3.blake3(struct.pack("<Q", self._piece_bytes))
        for pack in self._packs:
            hasher.update(pack.digest)
        for part in (self._pack, self._start, self._length, self._first):
            hasher.update(part.tobytes())
        hasher.update(self._blocks)
        return hasher.digest()

    def memory_bytes(self) -> int:
        """Bytes held by the table's arrays and records (not counting the small PackIds)."""
        arrays = (self._pack, self._start, self._length, self._first, self._size, self._largest)
        return len(self._blocks) + sum(a.itemsize * len(a) for a in arrays) + 80 * len(self._packs)

    def _records(self, index: int) -> bytes:
        return self._blocks[
            self._first[index] * BLOCK_RECORD : self._first[index + 1] * BLOCK_RECORD
        ]

    def with_blocks_over(self, limit: int) -> Bitfield:
        """The pieces holding a block of more than `limit` stored bytes: those the peer
        protocol does not carry (its MAX_BLOCK_SIZE), to be read from the store only."""
        return Bitfield.of(len(self), (i for i, big in enumerate(self._largest) if big > limit))

    def _largest_block(self, index: int) -> int:
        return max(
            (size for _rel, size, _id in _BLOCK.iter_unpack(self._records(index))), default=0
        )

    def _payload(self, index: int) -> int:
        return sum(size for _rel, size, _id in _BLOCK.iter_unpack(self._records(index)))


class PieceTableBuilder:
    """Collects a version's block locations, then sorts and cuts them into pieces.

    Holds 44 bytes per block (one bytearray per pack) until `finish`, which sorts one pack at
    a time, so only one pack's blocks are ever Python objects at once.
    """

    def __init__(
        self, manifest: ManifestId, piece_bytes: int = PIECE_BYTES, merge_gap: int = MERGE_GAP
    ) -> None:
        if piece_bytes <= 0:
            raise ValueError("pieces need a positive target size")
        self.manifest = manifest
        self.piece_bytes = piece_bytes
        self.merge_gap = merge_gap
        self._by_pack: dict[bytes, bytearray] = {}

    def add(self, block_id: bytes, stored_size: int, pack: bytes | None, offset: int) -> None:
        if pack is None:
            raise IntegrityError(
                f"block {block_id.hex()[:12]} of {self.manifest.short()} has no pack location"
            )
        if len(block_id) != DIGEST_SIZE or len(pack) != DIGEST_SIZE:
            raise IntegrityError("a block or pack id in the manifest is not 32 bytes")
        records = self._by_pack.get(pack)
        if records is None:
            records = self._by_pack[pack] = bytearray()
        records += _BUILD.pack(offset, stored_size, block_id)

    def finish(self) -> PieceTable:
        packs: list[PackId] = []
        pack_index, starts, lengths = array("I"), array("Q"), array("Q")
        first = array("Q")
        blocks = bytearray()
        count = 0
        for pack in sorted(self._by_pack):
            located = sorted(_BUILD.iter_unpack(self._by_pack.pop(pack)))
            packs.append(PackId(pack))
            which = len(packs) - 1
            piece_start = end = -1
            last: tuple[int, int, bytes] | None = None
            for offset, size, block_id in located:
                if last is not None and offset == last[0]:
                    if (size, block_id) != last[1:]:
                        raise IntegrityError(
                            f"manifest {self.manifest.short()} places two blocks at one offset"
                        )
                    continue  # the same block used again: one block of one piece
                if last is not None and offset < end:
                    raise IntegrityError(
                        f"manifest {self.manifest.short()} places blocks over each other"
                    )
                joins = (
                    piece_start >= 0
                    and offset - end <= self.merge_gap
                    and offset + size - piece_start <= self.piece_bytes
                )
                if not joins:
                    if piece_start >= 0:
                        lengths.append(end - piece_start)
                    piece_start = offset
                    pack_index.append(which)
                    starts.append(offset)
                    first.append(count)
                blocks += _BLOCK.pack(offset - piece_start, size, block_id)
                count += 1
                end = offset + size
                last = (offset, size, block_id)
            if piece_start >= 0:
                lengths.append(end - piece_start)
        first.append(count)
        return PieceTable(
            self.manifest,
            packs,
            pack_index,
            starts,
            lengths,
            first,
            bytes(blocks),
            self.piece_bytes,
        )
