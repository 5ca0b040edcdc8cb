"""Key derivation and authenticated encryption (XChaCha20-Poly1305 via PyNaCl).

Blocks use convergent encryption: the key is a keyed BLAKE3, under the namespace's convergence
secret, of the plaintext's BLAKE3 digest, and the nonce is derived from the key, so equal
plaintexts give equal ciphertexts inside one namespace (dedup survives) and nobody outside it
learns anything.
"""

from __future__ import annotations

import os

import blake3
from nacl._sodium import ffi, lib
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from aetherfs.errors import IntegrityError

KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16


def derive_key(secret: bytes, context: str, subject: bytes = b"") -> bytes:
    """A 32-byte key for one purpose (`context`) and subject, from a 32-byte master secret."""
    return blake3.blake3(context.encode() + b"\0" + subject, key=secret).digest()


def convergent_key(convergence_secret: bytes, digest: bytes) -> bytes:
    """The block key: keyed BLAKE3 of the plaintext's BLAKE3 `digest`.

    Keying the digest rather than the plaintext spares a second pass over every byte (the
    digest is computed anyway, for the manifest); without the secret the key is as unguessable.
    """
    return blake3.blake3(b"aetherfs block key\0" + digest, key=convergence_secret).digest()


def convergent_nonce(key: bytes) -> bytes:
    """A nonce derived from the key: only ever reused for the very same plaintext."""
    return blake3.blake3(b"aetherfs block nonce", key=key).digest()[:NONCE_SIZE]


def seal(plaintext: bytes | memoryview, key: bytes, nonce: bytes, aad: bytes = b"") -> bytes:
    return bytes(crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), aad, nonce, key))


def open_sealed(ciphertext: bytes, key: bytes, nonce: bytes, aad: bytes = b"") -> bytes:
    try:
        return bytes(crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key))
    except CryptoError:
        raise IntegrityError("decryption failed: wrong key or altered data") from None


# Output buffers left as malloc gives them: libsodium writes every byte or the open fails.
_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


def open_sealed_view(ciphertext: bytes | memoryview, key: bytes, nonce: bytes) -> memoryview:
    """`open_sealed` reading the ciphertext in place (a block inside a ranged read) and
    writing the plaintext straight into the buffer returned, with no copy on either side.

    libsodium through PyNaCl's own cffi module, which releases the GIL for the call: PyNaCl's
    wrapper takes only `bytes`, zero-fills its output and then copies it (three more passes
    over every block a pull opens, each under the GIL).
    """
    size = len(ciphertext) - TAG_SIZE
    if size < 0 or len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise IntegrityError("decryption failed: a sealed piece too short, or a bad key")
    out = _uncleared("unsigned char[]", max(size, 1))
    failed = lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
        out,
        ffi.NULL,
        ffi.NULL,
        ffi.from_buffer(ciphertext),
        len(ciphertext),
        ffi.NULL,
        0,
        nonce,
        key,
    )
    if failed:
        raise IntegrityError("decryption failed: wrong key or altered data")
    return memoryview(ffi.buffer(out, size))


def random_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def random_key() -> bytes:
    return os.urandom(KEY_SIZE)
