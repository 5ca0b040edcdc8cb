"""Content-defined chunking (FastCDC, compiled) over a stream, in bounded memory.

A cut point depends only on the bytes from the chunk's start up to `max_size` after it, so
chunking a sliding window and keeping every chunk that ends at least `max_size` before the
window's end gives exactly the cuts that chunking the whole file at once would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastcdc.fastcdc_cy import fastcdc_cy

KiB = 1024
MiB = 1024 * KiB


CDC = "cdc"
FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """How a file is cut: FastCDC with min/avg/max sizes, or fixed `avg_size` pieces.

    Chosen by measurement: see docs/benchmarks.md.
    """

    # 16K/64K/256K moved 10x fewer bytes than 256K/1M/4M on the 200-file pair and 1.3x fewer
    # on SQLite cut by CDC (benchmarks/chunk_sweep.py); packs make the request counts equal.
    min_size: int = 16 * KiB
    avg_size: int = 64 * KiB
    max_size: int = 256 * KiB
    kind: str = CDC

    def __post_init__(self) -> None:
        if self.kind not in (CDC, FIXED):
            raise ValueError(f"unknown chunking kind {self.kind!r}")
        if not 64 <= self.min_size <= self.avg_size <= self.max_size:
            raise ValueError(f"chunk sizes must satisfy 64 <= min <= avg <= max: {self}")

    @classmethod
    def fixed(cls, size: int) -> ChunkParams:
        return cls(size, size, size, FIXED)

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


def chunk_stream(
    stream: BinaryIO, params: ChunkParams = DEFAULT_PARAMS, window: int | None = None
) -> Iterator[Chunk]:
    """Yield the content-defined chunks of `stream`, holding at most `window` bytes at once."""
    if params.kind == FIXED:
        yield from _fixed_chunks(stream, params.avg_size)
        return
    window = window or 4 * params.max_size
    if window < 2 * params.max_size:
        raise ValueError("the window must hold at least two maximal chunks")
    buffer = bytearray()
    base = 0
    eof = False
    while not eof or buffer:
        while not eof and len(buffer) < window:
            piece = stream.read(window - len(buffer))
            if not piece:
                eof = True
            buffer += piece
        if not buffer:
            return
        view = memoryview(buffer)
        consumed = 0
        for cut in fastcdc_cy(view, params.min_size, params.avg_size, params.max_size):
            if not eof and cut.offset + params.max_size > len(buffer):
                break  # this cut could move once more bytes arrive
            yield Chunk(base + cut.offset, bytes(view[cut.offset : cut.offset + cut.length]))
            consumed = cut.offset + cut.length
        view.release()
        del buffer[:consumed]
        base += consumed


def _fixed_chunks(stream: BinaryIO, size: int) -> Iterator[Chunk]:
    offset = 0
    while True:
        data = stream.read(size)
        if not data:
            return
        while len(data) < size:  # a short read is not the end of the stream
            more = stream.read(size - len(data))
            if not more:
                break
            data += more
        yield Chunk(offset, data)
        offset += len(data)


SQLITE_MAGIC = b"SQLite format 3\x00"


def choose_params(header: bytes, default: ChunkParams = DEFAULT_PARAMS) -> ChunkParams:
    """Chunking for one file, from its first bytes: page-aligned for SQLite, else `default`.

    An SQLite update rewrites whole pages in place, so cutting on page boundaries keeps every
    untouched page a block of its own (casync PR #145 makes the same point for block images).
    """
    if header.startswith(SQLITE_MAGIC) and len(header) >= 18:
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        if page >= 512 and page & (page - 1) == 0:
            return ChunkParams.fixed(page)
    return default
