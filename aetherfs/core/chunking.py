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


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """FastCDC sizes. Chosen by measurement: see docs/benchmarks.md."""

    min_size: int = 256 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 4 * MiB

    def __post_init__(self) -> None:
        if not 64 <= self.min_size <= self.avg_size <= self.max_size:
            raise ValueError(f"chunk sizes must satisfy 64 <= min <= avg <= max: {self}")

    def as_list(self) -> list[int]:
        return [self.min_size, self.avg_size, self.max_size]

    @classmethod
    def from_list(cls, sizes: list[int]) -> ChunkParams:
        return cls(*sizes)


DEFAULT_PARAMS = ChunkParams()


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: int
    data: bytes


def chunk_stream(
    stream: BinaryIO, params: ChunkParams = DEFAULT_PARAMS, window: int | None = None
) -> Iterator[Chunk]:
    """Yield the content-defined chunks of `stream`, holding at most `window` bytes at once."""
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
