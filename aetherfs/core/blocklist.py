"""A file's blocks as fixed-size records: the in-memory form of manifests.

A BlockRef object and its parts take about 420 bytes of Python heap; a record takes 144.
BlockRefs are made on access, one at a time. The records are in one bytes object, or, for a
large manifest, in a spool file on disk (`RecordSpool`), read a run at a time as they are
used: a manifest is held while a version is pulled (16,000 blocks per GiB at 64 KiB), and in
memory its records would grow the pull with the size of the data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, overload

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import DIGEST_SIZE, BlockId, PackId

# id, key, plaintext digest, pack (zeros: not packed yet), size, stored size, offset in pack
_RECORD = struct.Struct("<32s32s32s32sIIQ")
_NO_PACK = bytes(DIGEST_SIZE)
RECORD_SIZE = _RECORD.size
RUN_RECORDS = 4096  # records read from a spool at a time: 576 KiB


class RecordSpool(Protocol):
    """Where the records of spooled BlockLists live (a file: see `aetherfs/repository/spool.py`)."""

    def append(self, data: bytes) -> int:
        """Keep `data` after what is there; returns where it starts."""
        ...

    def read(self, start: int, length: int) -> bytes:
        """`length` bytes from `start`, all of them."""
        ...


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
    """An immutable sequence of BlockRefs, equal to (and hashing as) others with equal records.

    Its records are in memory, or `_length` bytes from `_start` in a spool (`spooled`).
    """

    __slots__ = ("_length", "_records", "_spool", "_start")

    def __init__(self, refs: Iterable[BlockRef] = ()) -> None:
        self._records = b"".join(record_of(ref) for ref in refs)
        self._spool: RecordSpool | None = None
        self._start = 0
        self._length = len(self._records)

    @classmethod
    def from_records(cls, records: bytes) -> BlockList:
        if len(records) % RECORD_SIZE:
            raise ValueError("block records must be whole")
        made = cls()
        made._records = records
        made._length = len(records)
        return made

    @classmethod
    def spooled(cls, spool: RecordSpool, start: int, length: int) -> BlockList:
        """The `length` bytes of records at `start` in `spool`, read only when used."""
        if length % RECORD_SIZE:
            raise ValueError("block records must be whole")
        made = cls()
        made._spool, made._start, made._length = spool, start, length
        return made

    def like(self, runs: Iterable[bytes]) -> BlockList:
        """A list of the records in `runs`, kept where this one is (memory or its spool)."""
        if self._spool is None:
            return BlockList.from_records(b"".join(runs))
        start: int | None = None
        length = 0
        for run in runs:
            if run:
                at = self._spool.append(run)
                start = at if start is None else start
                length += len(run)
        return BlockList.spooled(self._spool, start or 0, length)

    @property
    def on_disk(self) -> bool:
        return self._spool is not None

    @property
    def records(self) -> bytes:
        """All the records at once (read whole from the spool, if spooled)."""
        return self._records if self._spool is None else b"".join(self._runs())

    def _runs(self) -> Iterator[bytes]:
        """The records, a run of at most RUN_RECORDS at a time."""
        if self._spool is None:
            yield self._records
            return
        end = self._start + self._length
        for start in range(self._start, end, RUN_RECORDS * RECORD_SIZE):
            yield self._spool.read(start, min(RUN_RECORDS * RECORD_SIZE, end - start))

    def _fields(self) -> Iterator[tuple[bytes, bytes, bytes, bytes, int, int, int]]:
        for run in self._runs():
            yield from _RECORD.iter_unpack(run)

    def iter_records(self) -> Iterator[bytes]:
        """Each block's record (its id is the first DIGEST_SIZE bytes)."""
        for run in self._runs():
            for start in range(0, len(run), RECORD_SIZE):
                yield run[start : start + RECORD_SIZE]

    def total_size(self) -> int:
        """Plaintext bytes of all the blocks, without making a BlockRef for each."""
        return sum(fields[4] for fields in self._fields())

    def digests_and_sizes(self) -> Iterator[tuple[bytes, int]]:
        """(plaintext digest, size) of each block, without a BlockRef for each."""
        for fields in self._fields():
            yield fields[2], fields[4]

    def wire_fields(self) -> Iterator[tuple[bytes, bytes, int, bytes, int, bytes | None, int]]:
        """(id, key, size, digest, stored size, pack or None, offset) of each block."""
        for block_id, key, digest, pack, size, stored, offset in self._fields():
            yield block_id, key, size, digest, stored, pack if pack != _NO_PACK else None, offset

    def __len__(self) -> int:
        return self._length // RECORD_SIZE

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
        if self._spool is None:
            return _ref_of(_RECORD.unpack_from(self._records, index * RECORD_SIZE))
        record = self._spool.read(self._start + index * RECORD_SIZE, RECORD_SIZE)
        return _ref_of(_RECORD.unpack(record))

    def __iter__(self) -> Iterator[BlockRef]:
        for fields in self._fields():
            yield _ref_of(fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockList):
            return self._length == other._length and self.records == other.records
        if isinstance(other, tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.records)

    def __repr__(self) -> str:
        where = "" if self._spool is None else ", spooled"
        return f"BlockList({len(self)} blocks{where})"


def as_block_list(refs: Sequence[BlockRef]) -> BlockList:
    return refs if isinstance(refs, BlockList) else BlockList(refs)


# A file's block list as edits of the same path's list in the base version (delta manifests):
# ops of (keep, drop, add): take `keep` records of the base, skip `drop`, then the `add`
# records that follow the op. Base records left after the last op are dropped. One record
# rewritten in place costs an op and a record (156 bytes), not the whole list again.
PATCH_OP = struct.Struct("<III")


def apply_patch(base: BlockList, patch: bytes) -> BlockList:
    """The block list `patch` describes over `base`; ValueError if it does not fit.

    A spooled base gives a spooled result, written to the same spool a run at a time.
    """
    return base.like(_patched_runs(base, patch))


def _patched_runs(base: BlockList, patch: bytes) -> Iterator[bytes]:
    source = base.iter_records()
    out = bytearray()
    at = 0
    while at < len(patch):
        if at + PATCH_OP.size > len(patch):
            raise ValueError("block patch is cut short")
        keep, drop, add = PATCH_OP.unpack_from(patch, at)
        at += PATCH_OP.size
        for _ in range(keep):
            record = next(source, None)
            if record is None:
                raise ValueError("block patch keeps more blocks than the base has")
            out += record
            if len(out) >= RUN_RECORDS * RECORD_SIZE:
                yield bytes(out)
                out.clear()
        for _ in range(drop):
            if next(source, None) is None:
                raise ValueError("block patch drops more blocks than the base has")
        literals = patch[at : at + add * RECORD_SIZE]
        if len(literals) != add * RECORD_SIZE:
            raise ValueError("block patch is cut short")
        out += literals
        at += len(literals)
    yield bytes(out)
