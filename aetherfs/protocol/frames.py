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
from collections import deque
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

    A frame that lies whole inside one chunk fed is a view into that chunk, not a copy. Only
    a frame split across chunks is gathered, into a bytearray of its own exact size (known
    from its prefix), so no byte is copied twice and nothing is compacted. Once next_frame()
    has returned None the buffer holds no view of any chunk fed, so the caller may reuse the
    memory it fed (the transport reads into one buffer, again and again).
    """

    __slots__ = ("_chunks", "_filled", "_partial", "_pos", "_queued", "_sized")

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()  # fed, not consumed yet
        self._pos = 0  # consumed of _chunks[0]
        self._queued = 0  # bytes in _chunks not consumed
        self._partial: bytearray | None = None  # a frame being gathered across chunks
        self._filled = 0  # bytes of _partial gathered
        self._sized = False  # _partial is the whole frame (else just its prefix so far)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            view = memoryview(data)
            self._chunks.append(view if view.format == "B" else view.cast("B"))
            self._queued += len(view)

    def pending(self) -> int:
        """Bytes received that are not a whole frame yet."""
        return self._queued + self._filled

    def missing(self) -> int:
        """Bytes still to come before the frame being gathered is whole; 0 when that is not
        known yet (no frame begun, or its prefix cut). A hint for the transport, which waits
        for that much before it reads again rather than waking for every segment."""
        if self._partial is None or not self._sized:
            return 0
        return len(self._partial) - self._filled

    def next_frame(self) -> Frame | None:
        if self._partial is None:
            if not self._queued:
                return None
            chunk, pos = self._chunks[0], self._pos
            left = len(chunk) - pos
            if left < PREFIX_SIZE:
                self._start(PREFIX_SIZE, False)
            else:
                length, kind = PREFIX.unpack_from(chunk, pos)
                _check(length, kind)
                size = PREFIX_SIZE + length
                if size <= left:  # the common case: whole inside this chunk, no copy
                    self._consume(size)
                    return Frame(
                        _KINDS[kind],
                        bytes(chunk[pos : pos + PREFIX_SIZE]),
                        chunk[pos + PREFIX_SIZE : pos + size],
                    )
                self._start(size, True)
        return self._gathered()

    def _start(self, size: int, sized: bool) -> None:
        self._partial, self._filled, self._sized = bytearray(size), 0, sized

    def _gathered(self) -> Frame | None:
        """Fill the frame being gathered from the chunks; the frame once it is whole."""
        partial = self._gather()
        if partial is None:
            return None
        if not self._sized:  # its prefix is whole: now gather the frame it announces
            length, kind = PREFIX.unpack_from(partial)
            _check(length, kind)
            self._start(PREFIX_SIZE + length, True)
            assert self._partial is not None
            self._partial[:PREFIX_SIZE] = partial
            self._filled = PREFIX_SIZE
            partial = self._gather()
            if partial is None:
                return None
        self._partial = None
        self._filled = 0
        return Frame(
            _KINDS[partial[4]], bytes(partial[:PREFIX_SIZE]), memoryview(partial)[PREFIX_SIZE:]
        )

    def _gather(self) -> bytearray | None:
        partial = self._partial
        assert partial is not None
        while self._filled < len(partial) and self._queued:
            chunk, pos = self._chunks[0], self._pos
            n = min(len(partial) - self._filled, len(chunk) - pos)
            partial[self._filled : self._filled + n] = chunk[pos : pos + n]
            self._filled += n
            self._consume(n)
        return partial if self._filled == len(partial) else None

    def _consume(self, n: int) -> None:
        self._queued -= n
        self._pos += n
        if self._pos == len(self._chunks[0]):
            self._chunks.popleft()
            self._pos = 0


_KINDS = tuple(FrameKind)  # by value: cheaper than FrameKind(kind) once per frame


def _check(length: int, kind: int) -> None:
    if length > MAX_FRAME_BODY:
        raise RemoteProtocolError(
            f"the peer sent a frame of {length} bytes, over the limit of {MAX_FRAME_BODY}"
        )
    if kind > FrameKind.SEALED_BLOCK:
        raise RemoteProtocolError(f"the peer sent a frame of unknown kind {kind}")


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
        return b"".join(self.block_frame_parts(header, payload, seal_payload))

    def block_frame_parts(
        self, header: bytes, payload: bytes | memoryview, seal_payload: bool
    ) -> tuple[bytes | memoryview, ...]:
        """A block frame as the buffers that follow one another on the wire: a BLOCK frame's
        payload is the caller's object itself, not copied (a transport writes the parts
        with one gathered write)."""
        if seal_payload:
            inner = HEADER_LENGTH.pack(len(header)) + header + payload
            prefix = _prefix(len(inner) + TAG_SIZE, FrameKind.SEALED_BLOCK)
            return (prefix + self.seal(inner, prefix),)
        sealed_length = len(header) + TAG_SIZE
        prefix = _prefix(2 + sealed_length + len(payload), FrameKind.BLOCK)
        length = HEADER_LENGTH.pack(sealed_length)
        return (prefix + length + self.seal(header, prefix + length), payload)

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
