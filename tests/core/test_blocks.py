import os

import blake3
import pytest

from aetherfs.core import crypto
from aetherfs.core.blocks import open_block, open_block_view, seal_block, verify_block
from aetherfs.core.ids import BlockId
from aetherfs.errors import IntegrityError

SECRET = bytes(32)


def test_round_trip_compressible_and_random() -> None:
    for data in (b"abc" * 100_000, os.urandom(100_000), b""):
        block = seal_block(data, SECRET)
        assert open_block(block.ref, block.stored) == data
        assert block.ref.id == BlockId.of(block.stored)


def test_convergent_equal_plaintexts_equal_ciphertexts() -> None:
    data = os.urandom(5000)
    assert seal_block(data, SECRET).stored == seal_block(data, SECRET).stored
    assert seal_block(data, SECRET).stored != seal_block(data, b"\1" * 32).stored


def test_ciphertext_hides_the_plaintext() -> None:
    data = b"secret-row," * 10_000
    assert b"secret-row" not in seal_block(data, SECRET).stored


def test_altered_block_is_refused() -> None:
    block = seal_block(os.urandom(1000), SECRET)
    altered = bytearray(block.stored)
    altered[10] ^= 1
    with pytest.raises(IntegrityError, match="does not match its id"):
        open_block(block.ref, bytes(altered))
    with pytest.raises(IntegrityError):
        verify_block(block.ref.id, bytes(altered))


def test_wrong_key_is_refused() -> None:
    block = seal_block(os.urandom(1000), SECRET)
    other = seal_block(os.urandom(1000), SECRET)
    forged = type(block.ref)(block.ref.id, other.ref.key, block.ref.size, block.ref.digest, 0)
    with pytest.raises(IntegrityError, match="wrong key"):
        open_block(forged, block.stored)


def test_block_key_is_keyed_over_the_plaintext_digest() -> None:
    data = b"one pass over the plaintext gives its digest and, keyed, its key" * 100
    ref = seal_block(data, SECRET).ref
    assert ref.digest == blake3.blake3(data).digest()
    assert ref.key == blake3.blake3(b"aetherfs block key\0" + ref.digest, key=SECRET).digest()
    assert open_block(ref, seal_block(data, SECRET).stored) == data


def test_a_view_seals_like_the_bytes_it_shows() -> None:
    data = b"abc" * 50_000 + os.urandom(20_000)
    with memoryview(data) as view:
        assert seal_block(view[1000:90_000], SECRET) == seal_block(data[1000:90_000], SECRET)


def test_a_block_opens_in_place_from_a_view_of_a_larger_buffer() -> None:
    """What a pull does: each block opened from a view of its ranged read, no copy."""
    blocks = [seal_block(data, SECRET) for data in (b"text," * 20_000, os.urandom(70_000))]
    packed = b"head" + b"".join(b.stored for b in blocks)
    offset = 4
    with memoryview(packed) as view:
        for block in blocks:
            stored = view[offset : offset + len(block.stored)]
            plaintext = open_block_view(block.ref, stored)
            assert bytes(plaintext) == open_block(block.ref, block.stored)
            assert open_block(block.ref, stored) == bytes(plaintext)
            offset += len(block.stored)


def test_a_view_altered_or_cut_short_is_refused() -> None:
    block = seal_block(os.urandom(5000), SECRET)
    altered = bytearray(block.stored)
    altered[-1] ^= 1  # the Poly1305 tag: only the AEAD check can see it, with `verified`
    with pytest.raises(IntegrityError, match="wrong key or altered"):
        open_block_view(block.ref, memoryview(altered), verified=True)
    with pytest.raises(IntegrityError, match="does not match its id"):
        open_block_view(block.ref, memoryview(altered))
    nonce = crypto.convergent_nonce(block.ref.key)
    for short in (b"", block.stored[: crypto.TAG_SIZE - 1], block.stored[:-1]):
        with pytest.raises(IntegrityError, match="decryption failed"):
            crypto.open_sealed_view(short, block.ref.key, nonce)
    assert bytes(crypto.open_sealed_view(block.stored, block.ref.key, nonce)) == (
        crypto.open_sealed(block.stored, block.ref.key, nonce)
    )
