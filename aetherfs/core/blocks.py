"""Blocks: one chunk of a file, compressed where that pays, convergently encrypted.

Stored bytes = XChaCha20-Poly1305(key, nonce(key), flag || body), where flag says whether body
is zstd-compressed. Block id = BLAKE3(stored bytes), so anyone can verify a block without keys.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import blake3
import zstandard

from aetherfs.core import crypto
from aetherfs.core.ids import BlockId, PackId
from aetherfs.errors import IntegrityError

_RAW = b"\x00"
_ZSTD = b"\x01"
# Keep compression only when it saves at least this fraction: below it, decompression costs
# more than the bytes saved.
_MIN_SAVING = 0.05
# Level 1: about twice as fast as level 3 for stored bytes within 1% on every benchmark pair
# (`python -m benchmarks.throughput`; figures in docs/benchmarks.md, "The tuned constants").
_ZSTD_LEVEL = 1
DEFAULT_LEVEL = _ZSTD_LEVEL
# For files rewritten from scratch (`ops/rebuilt.py`), which share no block with the version
# before: level 6 stored 4% less than level 1 on the rebuilt SQLite pair, at a third of the
# speed (`python -m benchmarks.compare --pairs sqlite-rebuilt`; docs/benchmarks.md).
REBUILT_LEVEL = 6
MAX_BLOCK_PLAINTEXT = 64 * 1024 * 1024
_SAMPLE = 4096


@dataclass(frozen=True, slots=True)
class BlockRef:
    """What a manifest records for one block: enough to fetch, verify, decrypt and place it."""

    id: BlockId
    key: bytes
    size: int  # plaintext length
    digest: bytes  # BLAKE3 of the plaintext: lets a reader reuse local bytes it already has
    stored_size: int  # bytes on the store and on the wire (compressed, encrypted)
    pack: PackId | None = None  # the store object holding it, once packed
    offset: int = 0  # where its stored bytes start inside the pack

    def located(self, pack: PackId, offset: int) -> BlockRef:
        return replace(self, pack=pack, offset=offset)


@dataclass(frozen=True, slots=True)
class SealedBlock:
    ref: BlockRef
    stored: bytes


def seal_block(
    plaintext: bytes | memoryview, convergence_secret: bytes, level: int = _ZSTD_LEVEL
) -> SealedBlock:
    """Compress (if it pays) and encrypt one chunk; deterministic for a given secret.

    One BLAKE3 pass over the plaintext gives both the digest the manifest records and, keyed,
    the block key; one more over the ciphertext gives the id.
    """
    digest = blake3.blake3(plaintext).digest()
    key = crypto.convergent_key(convergence_secret, digest)
    stored = seal_with_key(plaintext, key, level)
    ref = BlockRef(
        id=BlockId.of(stored),
        key=key,
        size=len(plaintext),
        digest=digest,
        stored_size=len(stored),
    )
    return SealedBlock(ref, stored)


def seal_with_key(
    plaintext: bytes | memoryview, key: bytes, level: int | None = _ZSTD_LEVEL
) -> bytes:
    """The stored bytes of a chunk whose block key is known (a manifest's `BlockRef.key`):
    what `seal_block` makes, so a holder of the plaintext and the ref can make the producer's
    bytes again without the convergence secret (an agent serving peers from its tree). Equal
    only with the producer's zstd level and library: callers check the id. `level=None`:
    stored uncompressed, as the producer did when `stored_raw(ref)`."""
    body = _RAW + plaintext
    if level is not None and _worth_compressing(plaintext):
        compressed = _compressor(level).compress(plaintext)
        if len(compressed) <= len(plaintext) * (1 - _MIN_SAVING):
            body = _ZSTD + compressed
    return crypto.seal(body, key, crypto.convergent_nonce(key))


# Flag byte and Poly1305 tag: what an uncompressed block's stored bytes add to its plaintext.
RAW_OVERHEAD = len(_RAW) + 16


def stored_raw(ref: BlockRef) -> bool:
    """Whether the producer stored this block uncompressed (its size says so: a compressed
    body is at least 5% smaller, so never exactly this long)."""
    return ref.stored_size == ref.size + RAW_OVERHEAD


_local = threading.local()


def _compressor(level: int = _ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    """One compressor per thread and level: making one allocates its whole working memory."""
    made: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if made is None:
        made = _local.compressors = {}
    compressor = made.get(level)
    if compressor is None:
        compressor = made[level] = zstandard.ZstdCompressor(level=level)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    """One decompressor per thread: making one per block cost 15 us, a fifth of opening a
    64 KiB text block (0.12 CPU s per GiB of a fresh pull)."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def _worth_compressing(plaintext: bytes | memoryview) -> bool:
    """Try a sample first: already-compressed data (Parquet pages, images) skips zstd."""
    if len(plaintext) <= 2 * _SAMPLE:
        return True
    sample = plaintext[:_SAMPLE]
    return len(_compressor().compress(sample)) <= _SAMPLE * (1 - _MIN_SAVING)


def verify_block(block_id: BlockId, stored: bytes | memoryview) -> None:
    """Raise IntegrityError unless `stored` hashes to `block_id`. Needs no key."""
    if BlockId.of(stored) != block_id:
        raise IntegrityError(f"block {block_id.short()} does not match its id: altered or corrupt")


def open_block(ref: BlockRef, stored: bytes | memoryview, verified: bool = False) -> bytes:
    """Verify, decrypt and decompress one block; raise IntegrityError on any mismatch.

    `verified`: the caller has just checked `stored` against `ref.id` (every BlockSource
    does), so the hash is not computed twice.
    """
    plaintext = open_block_view(ref, stored, verified)
    return plaintext if isinstance(plaintext, bytes) else bytes(plaintext)


def open_block_view(
    ref: BlockRef, stored: bytes | memoryview, verified: bool = False
) -> bytes | memoryview:
    """`open_block` without a copy: an uncompressed block's plaintext is a view into the
    buffer it was decrypted into (for writing out, hashing or copying once)."""
    if not verified:
        verify_block(ref.id, stored)
    body = crypto.open_sealed_view(stored, ref.key, crypto.convergent_nonce(ref.key))
    flag, payload = body[:1], body[1:]
    plaintext: bytes | memoryview
    if flag == _RAW:
        plaintext = payload
    elif flag == _ZSTD:
        try:
            plaintext = _decompressor().decompress(payload, max_output_size=MAX_BLOCK_PLAINTEXT)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"block {ref.id.short()} does not decompress: {exc}") from None
    else:
        raise IntegrityError(f"block {ref.id.short()} has an unknown encoding")
    if len(plaintext) != ref.size or blake3.blake3(plaintext).digest() != ref.digest:
        raise IntegrityError(f"block {ref.id.short()} decrypted to unexpected content")
    return plaintext
