"""The agent's identity: an Ed25519 key kept in its state directory, made on first start.

Peers know an agent by its public key (the handshake proves it; a hub certificate names
it). The key file is `STATE_DIR/identity.key`, mode 0600, a small JSON document; a file
readable by others or malformed is refused, never silently replaced, since a new key is a
new agent to its peers and to the hub that enrolled it.

The **agent id** is a short printable name derived from the public key (BLAKE3, 80 bits in
lower-case base32: 16 characters), stable for as long as the key is: it goes in the mDNS TXT
record, in status, and is the default name the agent enrols under.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from nacl.signing import SigningKey

from aetherfs.agent.private_file import PrivateFileError, read_private, write_private

IDENTITY_FILE = "identity.key"
FORMAT = 1
KIND = "aetherfs-agent-identity"
AGENT_ID_BYTES = 10  # 80 bits: no two agents of any fleet collide by chance


class IdentityError(PrivateFileError):
    """The identity key file is unsafe or malformed."""


@dataclass(frozen=True, slots=True, order=True)
class AgentId:
    """A short, stable name of an agent's public key: 16 characters of `[a-z2-7]`."""

    value: str

    @classmethod
    def of(cls, public_key: bytes) -> AgentId:
        digest = blake3.blake3(b"aetherfs agent id\0" + public_key).digest(AGENT_ID_BYTES)
        return cls(base64.b32encode(digest).decode().lower())

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class AgentIdentity:
    signing_key: SigningKey = field(repr=False)
    path: Path

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def agent_id(self) -> AgentId:
        return AgentId.of(self.public_key)


def identity_path(state_dir: Path) -> Path:
    return state_dir / IDENTITY_FILE


def _encode(key: SigningKey) -> bytes:
    doc = {"v": FORMAT, "kind": KIND, "seed": bytes(key).hex()}
    return (json.dumps(doc) + "\n").encode()


def _decode(raw: bytes, path: Path) -> SigningKey:
    bad = (
        f"{path} is not an agent identity key. If it was damaged, delete it: a new identity "
        "is made at the next start (peers see a new agent; an enrolled agent enrols again)"
    )
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise IdentityError(bad)
        if doc.get("v") != FORMAT:
            raise IdentityError(
                f"{path} is an identity key of format {doc.get('v')!r}, which this agent does "
                "not read: upgrade the agent"
            )
        seed = bytes.fromhex(str(doc["seed"]))
    except (ValueError, KeyError, TypeError):
        raise IdentityError(bad) from None
    if len(seed) != 32:
        raise IdentityError(bad)
    return SigningKey(seed)


def load_identity(state_dir: Path, create: bool = True) -> AgentIdentity:
    """The agent's identity, made (0600, atomically) on first start when `create`."""
    path = identity_path(state_dir)
    what = "the agent's identity key"
    cost = "a new identity is made at the next start; an enrolled agent must enrol again"
    try:
        raw = read_private(path, what, cost)
    except FileNotFoundError:
        if not create:
            raise IdentityError(f"no agent identity at {path}: start the agent once") from None
        # Two agents starting at once both keep whichever key was linked first.
        write_private(path, _encode(SigningKey.generate()), replace=False)
        raw = read_private(path, what, cost)
    return AgentIdentity(_decode(raw, path), path)
