"""The handshake's pure parts: version negotiation, the transcript hash, session keys.

Each side sends a Hello in the clear (versions it speaks, a fresh X25519 key). Both then know
the transcript hash `h` of the two hellos (initiator's first) and the X25519 shared secret, and
derive one key per direction and a session id from them, with `h` bound in. Everything after
that is sealed, and every proof (identity, fleet, dataset access) signs or MACs `h`, so a
man in the middle, a downgrade of the version ranges or a replay into another session fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import blake3
from nacl.bindings import crypto_scalarmult
from nacl.public import PrivateKey

from aetherfs.core import crypto
from aetherfs.protocol.errors import RemoteProtocolError

INITIATOR = b"I"
RESPONDER = b"R"
# The versions this build speaks. Version 2 adds HaveRange (see protocol/peer.md).
MIN_VERSION = 1
MAX_VERSION = 2


def negotiate(ours: tuple[int, int], theirs: tuple[int, int]) -> int | None:
    """The highest version both ranges hold, or None when they do not overlap."""
    high = min(ours[1], theirs[1])
    return high if high >= max(ours[0], theirs[0]) else None


def transcript_hash(initiator_hello: bytes, responder_hello: bytes) -> bytes:
    h = blake3.blake3(b"aetherfs peer handshake\0")
    for hello in (initiator_hello, responder_hello):
        h.update(len(hello).to_bytes(4, "big"))
        h.update(hello)
    return h.digest()


def identity_message(role: bytes, transcript: bytes) -> bytes:
    return b"aetherfs peer identity\0" + role + transcript


@dataclass(frozen=True, slots=True)
class SessionKeys:
    send: bytes = field(repr=False)
    receive: bytes = field(repr=False)
    session_id: bytes = field(repr=False)  # secret to the two ends: keys the blinded ids


def session_keys(
    ephemeral: PrivateKey, peer_ephemeral: bytes, transcript: bytes, initiator: bool
) -> SessionKeys:
    try:
        shared = crypto_scalarmult(bytes(ephemeral), peer_ephemeral)
    except Exception:
        raise RemoteProtocolError("the peer's ephemeral key is not a valid X25519 key") from None
    if shared == bytes(32):
        raise RemoteProtocolError("the peer's ephemeral key is of low order")
    secret = blake3.blake3(shared, key=transcript).digest()
    to_responder = crypto.derive_key(secret, "aetherfs peer initiator to responder")
    to_initiator = crypto.derive_key(secret, "aetherfs peer responder to initiator")
    session_id = crypto.derive_key(secret, "aetherfs peer session id")
    if initiator:
        return SessionKeys(to_responder, to_initiator, session_id)
    return SessionKeys(to_initiator, to_responder, session_id)
