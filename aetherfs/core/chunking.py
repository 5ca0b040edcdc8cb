"""Content-defined chunking (FastCDC, compiled) over a stream, in bounded memory.

A cut point depends only on the bytes from the chunk's start up to `max_size` after it, so
chunking a sliding window and keeping every chunk that ends at least `max_size` before the
window's end gives exactly the cuts that chunking the whole file at once would.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastcdc.fastcdc_cy import fastcdc_cy

KiB = 1024
MiB = 1024 * KiB


CDC = "cdc"
FIXED = "fixed"
# A header of `min_size` bytes, then fixed `avg_size` pieces: blocks aligned to a file's own
# records (`.npy` rows). Manifests naming it are written in document format 2.
RECORDS = "records"
KINDS = (CDC, FIXED, RECORDS)
# Bytes of a file's start that `choose_params` may look at (a `.npy` header fits in 4 KiB).
HEADER_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """How a file is cut: FastCDC with min/avg/max sizes, fixed `avg_size` pieces, or a
    `min_size`-byte header and then fixed `avg_size` pieces (RECORDS).

    Chosen by measurement: see docs/benchmarks.md.
    """

    # Fewest bytes moved at equal request counts once packed: `python -m benchmarks.chunk_sweep`
    # (figures in docs/benchmarks.md, "The tuned constants").
    min_size: int = 16 * KiB
    avg_size: int = 64 * KiB
    max_size: int = 256 * KiB
    kind: str = CDC

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown chunking kind {self.kind!r}")
        if self.kind == RECORDS:
            if not (self.min_size >= 1 and 64 <= self.avg_size == self.max_size):
                raise ValueError(f"record chunking needs a header and one block size: {self}")
        elif not 64 <= self.min_size <= self.avg_size <= self.max_size:
            raise ValueError(f"chunk sizes must satisfy 64 <= min <= avg <= max: {self}")

    @classmethod
    def fixed(cls, size: int) -> ChunkParams:
        return cls(size, size, size, FIXED)

    @classmethod
    def records(cls, header: int, size: int) -> ChunkParams:
        return cls(header, size, size, RECORDS)

    def as_list(self) -> list[int | str]:
        return [self.min_size, self.avg_size, self.max_size, self.kind]

    @classmethod
    def from_list(cls, fields: list[int | str]) -> ChunkParams:
        sizes = [int(x) for x in fields[:3]]
        kind = str(fields[3]) if len(fields) > 3 else CDC
        return cls(sizes[0], sizes[1], sizes[2], kind)


DEFAULT_PARAMS = ChunkParams()


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: int
    data: bytes


def default_window(params: ChunkParams) -> int:
    """Bytes held at once: the last cut of each window is found again in the next, so a
    window of many maximal chunks wastes little (at 4 MiB and 256 KiB chunks, ~7%)."""
    return max(4 * params.max_size, 4 * MiB)


def chunk_stream(
    stream: BinaryIO, params: ChunkParams = DEFAULT_PARAMS, window: int | None = None
) -> Iterator[Chunk]:
    """Yield the content-defined chunks of `stream`, holding at most `window` bytes at once."""
    for offset, span, lengths in cut_stream(stream, params, window):
        start = 0
        for length in lengths:
            yield Chunk(offset + start, bytes(span[start : start + length]))
            start += length


def cut_stream(
    stream: BinaryIO, params: ChunkParams = DEFAULT_PARAMS, window: int | None = None
) -> Iterator[tuple[int, memoryview, list[int]]]:
    """Cut `stream` without copying: (offset, span, lengths) per window read.

    `span` is a read-only view of the stream's bytes from `offset`, cut into chunks of
    `lengths` in order. It views one buffer that is refilled for the next window, so it is
    valid only until the next item is asked for: copy out what must outlive that. Reusing one
    buffer keeps memory flat and spares the allocator a fresh window per read.
    """
    window = window or default_window(params)
    if window < 2 * params.max_size:
        raise ValueError("the window must hold at least two maximal chunks")
    buffer = bytearray(window)
    readinto = getattr(stream, "readinto", None)
    filled = 0
    base = 0
    eof = False
    while True:
        while not eof and filled < window:
            with memoryview(buffer) as free:
                got = None
                if readinto is not None:
                    try:
                        got = readinto(free[filled:])
                    except NotImplementedError:  # a raw stream that only has read()
                        readinto = None
                if got is None:
                    piece = stream.read(window - filled)
                    got = len(piece)
                    free[filled : filled + got] = piece
            if not got:
                eof = True
            filled += got
        if not filled:
            return
        with memoryview(buffer) as whole:
            view = whole.toreadonly()[:filled]
            if params.kind == FIXED:
                lengths = _fixed_cuts(filled, params.avg_size, eof)
            elif params.kind == RECORDS:
                lengths = _record_cuts(filled, base, params, eof)
            else:
                lengths = _cdc_cuts(view, params, eof)
            consumed = sum(lengths)
            yield base, view[:consumed], lengths
            view.release()
        buffer[: filled - consumed] = buffer[consumed:filled]
        filled -= consumed
        base += consumed
        if eof and not filled:
            return


def _fixed_cuts(filled: int, size: int, eof: bool) -> list[int]:
    lengths = [size] * (filled // size)
    if eof and filled % size:
        lengths.append(filled % size)
    return lengths


def _record_cuts(filled: int, base: int, params: ChunkParams, eof: bool) -> list[int]:
    """The header as one piece (the window holds it: it is at most `HEADER_BYTES`), then
    fixed pieces."""
    if base > 0:
        return _fixed_cuts(filled, params.avg_size, eof)
    head = min(params.min_size, filled)
    return [head, *_fixed_cuts(filled - head, params.avg_size, eof)]


def _cdc_cuts(view: memoryview, params: ChunkParams, eof: bool) -> list[int]:
    """Chunk lengths from the start of `view`, keeping only cuts more bytes cannot move."""
    lengths: list[int] = []
    for cut in fastcdc_cy(view, params.min_size, params.avg_size, params.max_size):
        if not eof and cut.offset + params.max_size > len(view):
            break  # this cut could move once more bytes arrive
        lengths.append(cut.length)
    return lengths


SQLITE_MAGIC = b"SQLite format 3\x00"
NPY_MAGIC = b"\x93NUMPY"
# Record-aligned blocks of about this size moved the fewest bytes, manifest included, on the
# npy pair of benchmarks/record_pairs.py (`python -m benchmarks.compare`; figures in
# docs/benchmarks.md, "The tuned constants").
RECORD_BLOCK = 4 * KiB
# A file's block list costs 144 bytes per block in every full manifest: at most this many.
MAX_RECORD_BLOCKS = 1 << 20


def choose_params(
    header: bytes, default: ChunkParams = DEFAULT_PARAMS, size: int | None = None
) -> ChunkParams:
    """Chunking for one file, from its first bytes (up to `HEADER_BYTES`) and its size.

    Page-aligned for SQLite: an update rewrites whole pages in place, so cutting on page
    boundaries keeps every untouched page a block of its own (casync PR #145 makes the same
    point for block images). Row-aligned for a C-ordered `.npy` array, for the same reason at
    the grain of its rows. Else `default`.
    """
    if header.startswith(SQLITE_MAGIC) and len(header) >= 18:
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        if page >= 512 and page & (page - 1) == 0:
            return ChunkParams.fixed(page)
    if header.startswith(NPY_MAGIC):
        layout = npy_layout(header)
        if layout is not None:
            data_offset, row = layout
            rows = max(1, RECORD_BLOCK // row)
            if size is not None:  # keep the block list of a huge file bounded
                rows = max(rows, -(-(size - data_offset) // (row * MAX_RECORD_BLOCKS)))
            block = rows * row
            if 64 <= block <= default.max_size:
                return ChunkParams.records(data_offset, block)
    return default


_NUMERIC_DESCR = re.compile(r"[<>=|]?[fiucb](\d{1,2})")


def npy_layout(header: bytes) -> tuple[int, int] | None:
    """(offset of the data, bytes per row) of a C-ordered `.npy` file, or None.

    The format (NumPy's NEP 1): magic, major and minor version, a little-endian header length
    (2 bytes in version 1, 4 in versions 2 and 3), then a Python literal dict with `descr`,
    `fortran_order` and `shape`. Parsed with `ast.literal_eval` (literals only, no code).
    """
    if len(header) < 10:
        return None
    major = header[6]
    width = 2 if major == 1 else 4 if major in (2, 3) else 0
    if not width or len(header) < 8 + width:
        return None
    length = int.from_bytes(header[8 : 8 + width], "little")
    start = 8 + width
    if start + length > len(header):
        return None
    try:
        info = ast.literal_eval(header[start : start + length].decode("latin-1"))
        descr, fortran, shape = info["descr"], info["fortran_order"], tuple(info["shape"])
        numeric = _NUMERIC_DESCR.fullmatch(descr) if isinstance(descr, str) else None
        dims = [int(d) for d in shape]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        return None
    if fortran is not False or numeric is None or len(dims) < 2 or min(dims) < 0:
        return None
    row = int(numeric.group(1))
    for dim in dims[1:]:
        row *= dim
    return (start + length, row) if row > 0 else None
