import os

import blake3
import pytest

from aetherfs.core.blocks import open_block, seal_block, verify_block
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
