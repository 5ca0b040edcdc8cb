"""Record-aligned blocks for `.npy` arrays: rows rewritten in place change few blocks."""

from __future__ import annotations

import io

import numpy as np
import pytest

from aetherfs.core.chunking import (
    HEADER_BYTES,
    MAX_RECORD_BLOCKS,
    RECORD_BLOCK,
    RECORDS,
    ChunkParams,
    choose_params,
    cut_stream,
    npy_layout,
)
from aetherfs.core.manifest import FILE, FileEntry, Manifest, decode, encode, format_for


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def cuts(data: bytes, params: ChunkParams, window: int | None = None) -> list[int]:
    return [n for _, _, lengths in cut_stream(io.BytesIO(data), params, window) for n in lengths]


def test_a_c_ordered_matrix_is_cut_on_its_rows() -> None:
    data = npy_bytes(np.zeros((5000, 96), np.float32))
    params = choose_params(data[:HEADER_BYTES], size=len(data))
    assert params.kind == RECORDS
    header, row = npy_layout(data[:HEADER_BYTES]) or (0, 0)
    assert row == 384 and params.min_size == header
    assert params.avg_size % row == 0 and params.avg_size <= RECORD_BLOCK
    # Small windows: the header and every row boundary survive the window edges.
    for window in (None, 2 * params.max_size, 3 * params.max_size + 7):
        lengths = cuts(data, params, window)
        assert lengths[0] == header and sum(lengths) == len(data)
        assert all(n == params.avg_size for n in lengths[1:-1])


def test_rows_rewritten_in_place_change_only_their_blocks() -> None:
    matrix = np.random.default_rng(1).standard_normal((20_000, 96), dtype=np.float32)
    old = npy_bytes(matrix)
    matrix[[17, 9_000, 19_999]] = 0.5
    new = npy_bytes(matrix)
    params = choose_params(new[:HEADER_BYTES], size=len(new))

    def blocks(data: bytes) -> list[bytes]:
        out, at = [], 0
        for n in cuts(data, params):
            out.append(data[at : at + n])
            at += n
        return out

    changed = [a != b for a, b in zip(blocks(old), blocks(new), strict=True)]
    assert sum(changed) == 3


def test_a_huge_array_gets_larger_blocks_so_its_block_list_stays_bounded() -> None:
    header = npy_bytes(np.zeros((1, 96), np.float32))[:HEADER_BYTES]
    size = 400 * MAX_RECORD_BLOCKS * RECORD_BLOCK  # a 1.6 TiB file, by its size alone
    params = choose_params(header, size=size)
    assert params.kind != RECORDS or size // params.avg_size <= MAX_RECORD_BLOCKS


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(100),  # one dimension: no rows
        np.zeros((5, 5), order="F"),  # column-major: a row is not contiguous
        np.zeros((3, 2), dtype=[("a", "<i4")]),  # structured
        np.zeros((4, 4), dtype="U3"),  # strings
        np.zeros((10, 100_000), np.float64),  # rows larger than a block may be
    ],
)
def test_other_arrays_keep_the_default_chunking(array: np.ndarray) -> None:
    data = npy_bytes(array)
    assert choose_params(data[:HEADER_BYTES], size=len(data)).kind != RECORDS


@pytest.mark.parametrize(
    "header",
    [
        b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'",  # a length past the bytes given
        b"\x93NUMPY\x01\x00\x10\x00__import__('os')",  # not a literal
        b"\x93NUMPY\x09\x00\x10\x00{}",  # unknown version
        b"\x93NUMPY\x01\x00\x30\x00{'descr': '<f4', 'fortran_order': False, 'shape': 'ab'}",
        b"\x93NUMPY\x01\x00\x30\x00{'descr': '<f4', 'fortran_order': 0, 'shape': (3, -4)}",
        b"\x93NUMPY\x01\x00\x08\x00" + b"[" * 8,
    ],
)
def test_hostile_npy_headers_are_not_records(header: bytes) -> None:
    assert npy_layout(header) is None
    assert choose_params(header).kind != RECORDS


def test_record_chunking_is_named_in_format_2_and_only_then() -> None:
    records = ChunkParams.records(128, 3840)
    plain = Manifest("d", 0.0, ChunkParams(), (FileEntry("a", FILE),))
    with_records = Manifest("d", 0.0, ChunkParams(), (FileEntry("a", FILE, chunking=records),))
    assert format_for(None) == 1 and format_for(records) == 2
    assert encode(plain)[1:3] == b"\xa1v" and encode(plain)[3] == 1
    assert encode(with_records)[3] == 2
    assert decode(encode(with_records)).files[0].chunking == records
    with pytest.raises(ValueError):
        ChunkParams(0, 3840, 3840, RECORDS)
