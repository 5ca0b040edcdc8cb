"""Frames: a 5-byte prefix (body length, frame kind), then the body; sealed with counters.

    prefix = u32 big-endian body length || u8 kind
    PLAIN         body = msgpack message                 (handshake hello only)
    SEALED        body = AEAD(msgpack message)           (every other message)
    BLOCK         body = u16 h || AEAD(block header)[h] || stored block bytes, as they are
    SEALED_BLOCK  body = AEAD(u16 h || block header[h] || stored block bytes)

AEAD is ChaCha20-Poly1305 (IETF) under one key per direction; the nonce is the frame counter
(every sealed frame takes the next one), and the prefix is associated data. A frame replayed,
dropped, reordered, cut or altered therefore fails to open, and the connection ends. A BLOCK
frame's payload is not sealed again: it is a sealed, content-addressed block already, and its
integrity is bound by the block id in the sealed header, which the receiver checks (BLAKE3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from aetherfs.protocol.errors import LocalProtocolError, RemoteProtocolError

PREFIX = struct.Struct(">IB")
PREFIX_SIZE = PREFIX.size
HEADER_LENGTH = struct.Struct(">H")
TAG_SIZE = 16
# Blocks are at most 256 KiB of plaintext (the chunker's maximum); sealed, they gain a flag
# byte and a 16-byte tag. A frame must hold one such block with its header, nothing more:
# pieces travel as one frame per block, so no frame ever needs more.
MAX_BLOCK_SIZE = 256 * 1024 + 64
MAX_FRAME_BODY = MAX_BLOCK_SIZE + 4096
MAX_COUNTER = 2**64 - 1


class FrameKind(IntEnum):
    PLAIN = 0
    SEALED = 1
    BLOCK = 2
    SEALED_BLOCK = 3


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as received: its prefix (associated data of its seal) and its body."""

    kind: FrameKind
    prefix: bytes
    body: memoryview


class FrameBuffer:
    """Cuts a byte stream into frames; refuses an oversize or unknown frame at its prefix, so a
    peer cannot make us buffer more than one frame's worth.

    Frames that arrive whole inside one chunk are sliced out of it without a copy; only a
    frame split across chunks is gathered (in a bytearray, so many small chunks stay linear).
    """

    def __init__(self) -> None:
        self._data: bytes | bytearray = b""
        self._start = 0

    def feed(self, data: bytes | memoryview) -> None:
        if self._start == len(self._data):
            self._data, self._start = bytes(data), 0
            return
        if isinstance(self._data, bytes):
            self._data = bytearray(memoryview(self._data)[self._start :])
        elif self._start:
            del self._data[: self._start]
        self._start = 0
        self._data += data

    def pending(self) -> int:
        """Bytes received that are not a whole frame yet."""
        return len(self._data) - self._start

    def next_frame(self) -> Frame | None:
        if self.pending() < PREFIX_SIZE:
            return None
        length, kind = PREFIX.unpack_from(self._data, self._start)
        if length > MAX_FRAME_BODY:
            raise RemoteProtocolError(
                f"the peer sent a frame of {length} bytes, over the limit of {MAX_FRAME_BODY}"
            )
        if kind > FrameKind.SEALED_BLOCK:
            raise RemoteProtocolError(f"the peer sent a frame of unknown kind {kind}")
        start = self._start
        end = start + PREFIX_SIZE + length
        if len(self._data) < end:
            return None
        prefix = bytes(self._data[start : start + PREFIX_SIZE])
        if isinstance(self._data, bytearray):
            # The bytearray is reused for later frames: copy this one out, export nothing.
            with memoryview(self._data) as view:
                body = memoryview(bytes(view[start + PREFIX_SIZE : end]))
        else:
            body = memoryview(self._data)[start + PREFIX_SIZE : end]
        self._start = end
        return Frame(FrameKind(kind), prefix, body)


def _prefix(length: int, kind: FrameKind) -> bytes:
    if length > MAX_FRAME_BODY:
        raise LocalProtocolError(f"a frame of {length} bytes is over the limit {MAX_FRAME_BODY}")
    return PREFIX.pack(length, kind)


def plain_frame(body: bytes) -> bytes:
    return _prefix(len(body), FrameKind.PLAIN) + body


class FrameCipher:
    """One direction's key and counter. Each sealed frame uses the next counter as its nonce."""

    __slots__ = ("_key", "counter")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.counter = 0

    def _nonce(self) -> bytes:
        if self.counter >= MAX_COUNTER:
            raise LocalProtocolError("the frame counter is exhausted: open a new connection")
        nonce = self.counter.to_bytes(12, "little")
        self.counter += 1
        return nonce

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        return crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes(plaintext), aad, self._nonce(), self._key
        )

    def open(self, ciphertext: bytes | memoryview, aad: bytes) -> bytes:
        try:
            return crypto_aead_chacha20poly1305_ietf_decrypt(
                bytes(ciphertext), aad, self._nonce(), self._key
            )
        except CryptoError:
            raise RemoteProtocolError(
                "a frame failed authentication: altered, replayed, reordered or dropped"
            ) from None

    # Framing that needs the counter lives here, so the order of counters is in one place.

    def sealed_frame(self, body: bytes) -> bytes:
        prefix = _prefix(len(body) + TAG_SIZE, FrameKind.SEALED)
        return prefix + self.seal(body, prefix)

    def block_frame(self, header: bytes, payload: bytes | memoryview, seal_payload: bool) -> bytes:
        if seal_payload:
            inner = HEADER_LENGTH.pack(len(header)) + header + payload
            prefix = _prefix(len(inner) + TAG_SIZE, FrameKind.SEALED_BLOCK)
            return prefix + self.seal(inner, prefix)
        sealed_length = len(header) + TAG_SIZE
        prefix = _prefix(2 + sealed_length + len(payload), FrameKind.BLOCK)
        length = HEADER_LENGTH.pack(sealed_length)
        return b"".join((prefix, length, self.seal(header, prefix + length), payload))

    def open_block(self, frame: Frame) -> tuple[bytes, memoryview]:
        """(header, payload) of a BLOCK or SEALED_BLOCK frame."""
        body = frame.body
        if frame.kind is FrameKind.SEALED_BLOCK:
            inner = memoryview(self.open(body, frame.prefix))
            if len(inner) < 2:
                raise RemoteProtocolError("a block frame is too short")
            (length,) = HEADER_LENGTH.unpack_from(inner)
            if 2 + length > len(inner):
                raise RemoteProtocolError("a block frame's header runs past its end")
            return bytes(inner[2 : 2 + length]), inner[2 + length :]
        if len(body) < 2:
            raise RemoteProtocolError("a block frame is too short")
        (length,) = HEADER_LENGTH.unpack_from(body)
        if length < TAG_SIZE or 2 + length > len(body):
            raise RemoteProtocolError("a block frame's header runs past its end")
        header = self.open(body[2 : 2 + length], frame.prefix + bytes(body[:2]))
        return header, body[2 + length :]
