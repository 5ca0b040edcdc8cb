"""Packs: many stored blocks laid end to end in one store object.

Small blocks dedup well but one object each would make every upload a storm of PUTs; a pack
holds blocks up to a target size, is written with one PUT, and is read back with ranged GETs
(neighbouring blocks merged into one request). The pack id is BLAKE3 of its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aetherfs.core.blocks import BlockRef, SealedBlock
from aetherfs.core.ids import BlockId, PackId

MiB = 1024 * 1024
# A PUT per pack instead of per block: `python -m benchmarks.chunk_sweep`, columns (ii)
# (figures in docs/benchmarks.md, "The tuned constants").
PACK_TARGET = 16 * MiB
# Reading a gap costs egress; one more GET costs ~4 KB of egress at AWS list prices
# ($0.0004 per 1,000 GETs against $0.09 per GB), so merge ranges across gaps up to that.
MERGE_GAP = 4096
MAX_RANGE = 8 * MiB


class PackBuilder:
    """Lays sealed blocks end to end in one buffer until the pack is full; not thread-safe.

    The buffer can be handed in and taken back (`buffer`) to build pack after pack in the
    same memory: a push then holds two pack buffers however much it uploads, and the
    allocator never sees a pack-sized block come and go.
    """

    def __init__(self, buffer: bytearray | None = None) -> None:
        self.buffer = bytearray() if buffer is None else buffer
        self._blocks: list[BlockRef] = []
        self.size = 0

    def add(self, block: SealedBlock) -> None:
        end = self.size + len(block.stored)
        # Overwrites in place; grows the buffer only when a block runs past its end.
        self.buffer[self.size : min(end, len(self.buffer))] = block.stored
        self._blocks.append(block.ref)
        self.size = end

    def __len__(self) -> int:
        return len(self._blocks)

    def seal(self) -> tuple[PackId, bytes, dict[BlockId, BlockRef]]:
        """The pack's id and bytes (a copy), and each block located inside it."""
        pack_id, view, located = self.seal_in_place()
        with view:
            return pack_id, bytes(view), located

    def seal_in_place(self) -> tuple[PackId, memoryview, dict[BlockId, BlockRef]]:
        """Like `seal`, with a read-only view of the buffer instead of a copy.

        Release the view before the buffer is built on again.
        """
        with memoryview(self.buffer) as whole:
            view = whole[: self.size].toreadonly()
        pack_id = PackId.of(view)
        located: dict[BlockId, BlockRef] = {}
        offset = 0
        for ref in self._blocks:
            located[ref.id] = ref.located(pack_id, offset)
            offset += ref.stored_size
        return pack_id, view, located


@dataclass(frozen=True, slots=True)
class ReadRange:
    """One ranged GET: a stretch of a pack covering one or more wanted blocks."""

    pack: PackId
    start: int
    length: int
    blocks: tuple[BlockRef, ...]

    def cut(self, data: bytes) -> Iterator[tuple[BlockRef, bytes]]:
        for ref in self.blocks:
            begin = ref.offset - self.start
            yield ref, data[begin : begin + ref.stored_size]


def plan_reads(
    refs: Iterable[BlockRef], merge_gap: int = MERGE_GAP, max_range: int = MAX_RANGE
) -> list[ReadRange]:
    """Group blocks into as few ranged reads as pays, by pack and offset."""
    ordered = sorted(
        {ref.id: ref for ref in refs}.values(),
        key=lambda r: (r.pack.digest if r.pack else b"", r.offset),
    )
    ranges: list[ReadRange] = []
    current: list[BlockRef] = []
    for ref in ordered:
        if ref.pack is None:
            raise ValueError(f"block {ref.id.short()} has no pack location")
        if current:
            first, last = current[0], current[-1]
            end = last.offset + last.stored_size
            joins = (
                ref.pack == first.pack
                and ref.offset - end <= merge_gap
                and ref.offset + ref.stored_size - first.offset <= max_range
            )
            if not joins:
                ranges.append(_range(current))
                current = []
        current.append(ref)
    if current:
        ranges.append(_range(current))
    return ranges


def _range(blocks: list[BlockRef]) -> ReadRange:
    first, last = blocks[0], blocks[-1]
    assert first.pack is not None
    start = first.offset
    return ReadRange(first.pack, start, last.offset + last.stored_size - start, tuple(blocks))
