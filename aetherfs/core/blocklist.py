"""A file's blocks as fixed-size records in one bytes object: the in-memory form of manifests.

A BlockRef object and its parts take about 420 bytes of Python heap; a record takes 144.
A manifest is held whole while a version is pulled (16,000 blocks per GiB at 64 KiB), so this
is most of what a pull's memory grows by with the size of the data. BlockRefs are made on
access, one at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import DIGEST_SIZE, BlockId, PackId

# id, key, plaintext digest, pack (zeros: not packed yet), size, stored size, offset in pack
_RECORD = struct.Struct("<32s32s32s32sIIQ")
_NO_PACK = bytes(DIGEST_SIZE)


def pack_record(
    block_id: bytes,
    key: bytes,
    digest: bytes,
    pack: bytes | None,
    size: int,
    stored_size: int,
    offset: int,
) -> bytes:
    """One record; ValueError if a field has the wrong length or is out of range."""
    for name, value in (("id", block_id), ("key", key), ("digest", digest)):
        if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
            raise ValueError(f"block {name} must be {DIGEST_SIZE} bytes")
    if pack is not None and (not isinstance(pack, bytes) or len(pack) != DIGEST_SIZE):
        raise ValueError(f"pack id must be {DIGEST_SIZE} bytes")
    try:
        return _RECORD.pack(block_id, key, digest, pack or _NO_PACK, size, stored_size, offset)
    except struct.error as exc:
        raise ValueError(f"block record out of range: {exc}") from None


def record_of(ref: BlockRef) -> bytes:
    return pack_record(
        ref.id.digest,
        ref.key,
        ref.digest,
        ref.pack.digest if ref.pack is not None else None,
        ref.size,
        ref.stored_size,
        ref.offset,
    )


def _ref_of(fields: tuple[bytes, bytes, bytes, bytes, int, int, int]) -> BlockRef:
    block_id, key, digest, pack, size, stored_size, offset = fields
    return BlockRef(
        BlockId(block_id),
        key,
        size,
        digest,
        stored_size,
        PackId(pack) if pack != _NO_PACK else None,
        offset,
    )


class BlockList(Sequence[BlockRef]):
    """An immutable sequence of BlockRefs, equal to (and hashing as) others with equal records."""

    __slots__ = ("_records",)

    def __init__(self, refs: Iterable[BlockRef] = ()) -> None:
        self._records = b"".join(record_of(ref) for ref in refs)

    @classmethod
    def from_records(cls, records: bytes) -> BlockList:
        if len(records) % _RECORD.size:
            raise ValueError("block records must be whole")
        made = cls()
        made._records = records
        return made

    @property
    def records(self) -> bytes:
        return self._records

    def iter_records(self) -> Iterator[bytes]:
        """Each block's record (its id is the first DIGEST_SIZE bytes)."""
        for start in range(0, len(self._records), _RECORD.size):
            yield self._records[start : start + _RECORD.size]

    def total_size(self) -> int:
        """Plaintext bytes of all the blocks, without making a BlockRef for each."""
        return sum(fields[4] for fields in _RECORD.iter_unpack(self._records))

    def digests_and_sizes(self) -> Iterator[tuple[bytes, int]]:
        """(plaintext digest, size) of each block, without a BlockRef for each."""
        for fields in _RECORD.iter_unpack(self._records):
            yield fields[2], fields[4]

    def wire_fields(self) -> Iterator[tuple[bytes, bytes, int, bytes, int, bytes | None, int]]:
        """(id, key, size, digest, stored size, pack or None, offset) of each block."""
        for block_id, key, digest, pack, size, stored, offset in _RECORD.iter_unpack(self._records):
            yield block_id, key, size, digest, stored, pack if pack != _NO_PACK else None, offset

    def __len__(self) -> int:
        return len(self._records) // _RECORD.size

    @overload
    def __getitem__(self, index: int) -> BlockRef: ...

    @overload
    def __getitem__(self, index: slice) -> BlockList: ...

    def __getitem__(self, index: int | slice) -> BlockRef | BlockList:
        if isinstance(index, slice):
            return BlockList(self[i] for i in range(*index.indices(len(self))))
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("block index out of range")
        return _ref_of(_RECORD.unpack_from(self._records, index * _RECORD.size))

    def __iter__(self) -> Iterator[BlockRef]:
        for fields in _RECORD.iter_unpack(self._records):
            yield _ref_of(fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockList):
            return self._records == other._records
        if isinstance(other, tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._records)

    def __repr__(self) -> str:
        return f"BlockList({len(self)} blocks)"


def as_block_list(refs: Sequence[BlockRef]) -> BlockList:
    return refs if isinstance(refs, BlockList) else BlockList(refs)
