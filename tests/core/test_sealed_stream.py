import io
import os
from collections.abc import Iterator

import pytest

from aetherfs.core.sealed_stream import (
    CHUNK,
    HEADER_SIZE,
    SEALED_CHUNK,
    StreamSealer,
    open_stream_from,
)
from aetherfs.errors import IntegrityError

KEY = bytes(range(32))
AAD = b"test"


def open_stream(stored: bytes, key: bytes, aad: bytes) -> Iterator[bytes]:
    return open_stream_from(io.BytesIO(stored).read, key, aad)


def sealed(message: bytes, writes: int = 7) -> bytes:
    out: list[bytes] = []
    sealer = StreamSealer(KEY, AAD, out.append)
    step = max(1, len(message) // writes)
    for start in range(0, len(message), step):
        sealer.write(message[start : start + step])
    sealer.close()
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_at_piece_boundaries(size: int) -> None:
    message = os.urandom(size)
    stored = sealed(message)
    pieces = max(1, -(-size // CHUNK))
    assert len(stored) == HEADER_SIZE + size + pieces * (SEALED_CHUNK - CHUNK)
    assert b"".join(open_stream(stored, KEY, AAD)) == message


def test_each_piece_is_checked_before_it_is_given() -> None:
    message = os.urandom(3 * CHUNK)
    stored = bytearray(sealed(message))
    stored[HEADER_SIZE + SEALED_CHUNK + 10] ^= 1  # in the second piece
    pieces = open_stream(bytes(stored), KEY, AAD)
    assert next(pieces) == message[:CHUNK]
    with pytest.raises(IntegrityError, match="altered"):
        next(pieces)


@pytest.mark.parametrize(
    "cut",
    [
        lambda s: s[
            : HEADER_SIZE + 2 * SEALED_CHUNK
        ],  # last piece dropped: the one before is not FINAL
        lambda s: s[: HEADER_SIZE + SEALED_CHUNK],  # only the first piece
        lambda s: s + s[HEADER_SIZE : HEADER_SIZE + SEALED_CHUNK],  # a piece replayed at the end
        lambda s: s[:-1],  # last piece cut short
        lambda s: s[:HEADER_SIZE],  # no pieces at all
    ],
)
def test_a_stream_cut_short_or_extended_is_refused(cut: object) -> None:
    stored = sealed(os.urandom(2 * CHUNK + 100))
    with pytest.raises(IntegrityError):
        b"".join(open_stream(cut(stored), KEY, AAD))  # type: ignore[operator]


def test_wrong_key_or_context_is_refused() -> None:
    stored = sealed(b"hello")
    with pytest.raises(IntegrityError):
        b"".join(open_stream(stored, bytes(32), AAD))
    with pytest.raises(IntegrityError):
        b"".join(open_stream(stored, KEY, b"other"))


def test_write_after_close_is_an_error() -> None:
    sealer = StreamSealer(KEY, AAD, lambda _: None)
    sealer.close()
    with pytest.raises(ValueError):
        sealer.write(b"x")
