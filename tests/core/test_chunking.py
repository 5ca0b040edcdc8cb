import io
import os
import random

from fastcdc.fastcdc_cy import fastcdc_cy

from aetherfs.core.chunking import ChunkParams, chunk_stream, cut_stream, default_window

SMALL = ChunkParams(4096, 16384, 65536)


def test_streaming_cuts_equal_whole_buffer_cuts() -> None:
    data = os.urandom(3 * 1024 * 1024)
    whole = [(c.offset, c.length) for c in fastcdc_cy(data, 4096, 16384, 65536)]
    streamed = [
        (c.offset, len(c.data)) for c in chunk_stream(io.BytesIO(data), SMALL, window=131072)
    ]
    assert streamed == whole


def test_chunks_reassemble_to_the_input() -> None:
    data = os.urandom(1_000_003)
    assert b"".join(c.data for c in chunk_stream(io.BytesIO(data), SMALL)) == data


def test_empty_stream_has_no_chunks() -> None:
    assert list(chunk_stream(io.BytesIO(b""), SMALL)) == []


def test_insert_in_the_middle_changes_few_chunks() -> None:
    rng = random.Random(1)
    data = rng.randbytes(4 * 1024 * 1024)
    edited = data[:2_000_000] + b"inserted bytes" + data[2_000_000:]
    before = {c.data for c in chunk_stream(io.BytesIO(data), SMALL)}
    after = [c.data for c in chunk_stream(io.BytesIO(edited), SMALL)]
    changed = [c for c in after if c not in before]
    assert len(changed) <= 2
    assert len(after) > 100


def test_chunk_sizes_respect_bounds() -> None:
    data = os.urandom(2 * 1024 * 1024)
    chunks = list(chunk_stream(io.BytesIO(data), SMALL))
    assert all(len(c.data) <= SMALL.max_size for c in chunks)
    assert all(len(c.data) >= SMALL.min_size for c in chunks[:-1])


class CountingReader(io.RawIOBase):
    """A reader of `size` bytes that never holds them all: checks memory stays bounded."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.rng = random.Random(3)
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, n if n >= 0 else self.left)
        self.largest_read = max(self.largest_read, n)
        self.left -= n
        return self.rng.randbytes(n)


def test_large_stream_is_read_in_bounded_windows() -> None:
    reader = CountingReader(64 * 1024 * 1024)
    total = sum(len(c.data) for c in chunk_stream(reader, SMALL))  # type: ignore[arg-type, misc]
    assert total == 64 * 1024 * 1024
    assert reader.largest_read <= default_window(SMALL) < 64 * 1024 * 1024


def test_cut_stream_spans_cover_the_stream_in_order() -> None:
    data = os.urandom(2_500_000)
    for params in (SMALL, ChunkParams.fixed(4096)):
        pieces = []
        offsets = []
        for offset, span, lengths in cut_stream(io.BytesIO(data), params, window=262144):
            assert sum(lengths) == len(span)
            offsets.append(offset)
            pieces.append(bytes(span))  # copied out: the span is reused for the next window
        assert b"".join(pieces) == data
        assert offsets == sorted(set(offsets)) and offsets[0] == 0
    cuts = cut_stream(io.BytesIO(data), ChunkParams.fixed(4096))
    fixed = [length for _, _, lengths in cuts for length in lengths]
    assert fixed == [4096] * (len(data) // 4096) + [len(data) % 4096]
