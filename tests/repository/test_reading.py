"""Blocks cut out of a ranged read: views of it, each checked against its id."""

from __future__ import annotations

import os

import pytest

from aetherfs.core.blocks import BlockRef, open_block, seal_block
from aetherfs.core.packs import PackBuilder, ReadRange
from aetherfs.errors import IntegrityError
from aetherfs.repository.reading import gather_blocks

SECRET = bytes(32)


def _pack(plaintexts: list[bytes]) -> tuple[bytes, list[BlockRef]]:
    builder = PackBuilder()
    sealed = [seal_block(p, SECRET) for p in plaintexts]
    for block in sealed:
        builder.add(block)
    _, data, located = builder.seal()
    return data, [located[b.ref.id] for b in sealed]


def test_blocks_come_as_views_of_the_read_and_open() -> None:
    plaintexts = [os.urandom(3000), b"row," * 4000, os.urandom(10)]
    data, refs = _pack(plaintexts)
    reads: list[ReadRange] = []

    def range_bytes(dataset: str, read: ReadRange) -> bytes:
        reads.append(read)
        return data[read.start : read.start + read.length]

    found = gather_blocks(range_bytes, "team/d", refs)
    assert len(reads) == 1  # neighbours in one pack: one ranged read
    for ref, plaintext in zip(refs, plaintexts, strict=True):
        assert isinstance(found[ref.id], memoryview)  # not a copy per block
        assert open_block(ref, found[ref.id], verified=True) == plaintext


def test_an_altered_or_short_read_is_refused() -> None:
    data, refs = _pack([os.urandom(2000), os.urandom(2000)])
    altered = bytearray(data)
    altered[refs[1].offset + 5] ^= 1
    with pytest.raises(IntegrityError, match="does not match its id"):
        gather_blocks(lambda _, r: bytes(altered[r.start : r.start + r.length]), "d", refs)
    with pytest.raises(IntegrityError, match="shorter than its manifest says"):
        gather_blocks(lambda _, r: data[r.start : r.start + r.length - 1], "d", refs)
