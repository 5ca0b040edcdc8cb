"""A long message encrypted piece by piece: libsodium's secretstream (XChaCha20-Poly1305).

Used for manifests, which grow with the data (about 150 bytes per block): sealed in one piece, a
manifest had to be whole in memory twice over, as plaintext and as ciphertext. Here the message
is cut into CHUNK-byte pieces, each authenticated and chained to the one before, and the last
one carries the FINAL tag, so a reader detects a piece altered, dropped, reordered or cut off at
the end. Stored: a 24-byte header, then each piece's ciphertext (CHUNK + 17 bytes; the last may
be shorter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_ABYTES as OVERHEAD,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_HEADERBYTES as HEADER_SIZE,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_init_pull,
    crypto_secretstream_xchacha20poly1305_init_push,
    crypto_secretstream_xchacha20poly1305_pull,
    crypto_secretstream_xchacha20poly1305_push,
    crypto_secretstream_xchacha20poly1305_state,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_TAG_FINAL as TAG_FINAL,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE as TAG_MESSAGE,
)
from nacl.exceptions import CryptoError

from aetherfs.errors import IntegrityError

CHUNK = 64 * 1024  # plaintext bytes per piece: 17 bytes of overhead each, 0.03%
SEALED_CHUNK = CHUNK + OVERHEAD

__all__ = [
    "CHUNK",
    "HEADER_SIZE",
    "SEALED_CHUNK",
    "StreamSealer",
    "open_stream_from",
]


class StreamSealer:
    """Encrypts what is written to it and hands the sealed bytes to `sink` as they are made."""

    def __init__(self, key: bytes, aad: bytes, sink: Callable[[bytes], object]) -> None:
        self._state = crypto_secretstream_xchacha20poly1305_state()
        self._aad = aad
        self._sink = sink
        self._pending = bytearray()
        self._closed = False
        sink(crypto_secretstream_xchacha20poly1305_init_push(self._state, key))

    def write(self, data: bytes | memoryview) -> None:
        if self._closed:
            raise ValueError("write to a closed StreamSealer")
        self._pending += data
        # Keep at least one byte back: the last piece, sealed by close(), must not be empty
        # unless the whole message is. Whole pieces are cut by offset, then dropped at once.
        start = 0
        with memoryview(self._pending) as view:
            while len(view) - start > CHUNK:
                self._seal(bytes(view[start : start + CHUNK]), TAG_MESSAGE)
                start += CHUNK
        del self._pending[:start]

    def close(self) -> None:
        """Seal the last piece with the FINAL tag: a reader refuses a stream without it."""
        if not self._closed:
            self._closed = True
            self._seal(bytes(self._pending), TAG_FINAL)
            self._pending = bytearray()

    def _seal(self, piece: bytes, tag: int) -> None:
        self._sink(crypto_secretstream_xchacha20poly1305_push(self._state, piece, self._aad, tag))


def open_stream_from(read: Callable[[int], bytes], key: bytes, aad: bytes) -> Iterator[bytes]:
    """The plaintext pieces of the sealed bytes `read(n)` gives until it gives b"", each checked
    before it is yielded.

    IntegrityError for a wrong key, an altered piece, or a stream cut short or extended.
    """
    header = read(HEADER_SIZE)
    if len(header) < HEADER_SIZE:
        raise IntegrityError("sealed stream is too short")
    state = crypto_secretstream_xchacha20poly1305_state()
    try:
        crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    except CryptoError:
        raise IntegrityError("sealed stream has a bad header") from None
    while True:
        piece = read(SEALED_CHUNK)
        if not piece:
            raise IntegrityError("sealed stream was cut short")
        try:
            plaintext, tag = crypto_secretstream_xchacha20poly1305_pull(state, piece, aad)
        except CryptoError:
            raise IntegrityError("decryption failed: wrong key or altered data") from None
        if tag == TAG_FINAL:
            if read(1):
                raise IntegrityError("sealed stream was extended past its end")
            yield plaintext
            return
        yield plaintext
