"""Keyrings: the secrets of one store, kept outside it (0600 files, one per store id).

One 32-byte master secret derives each dataset's key (`dataset` context) and the namespace's
convergence secret (`convergence` context); an Ed25519 seed signs tag records. The store only
holds a key check value, so a wrong keyring is reported before anything is decrypted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from aetherfs.core import crypto
from aetherfs.errors import KeyringError

KEYRING_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Keyring:
    store_id: str
    master: bytes
    signing_seed: bytes | None  # None on a reader's keyring
    trusted_signers: tuple[bytes, ...] = ()

    @classmethod
    def generate(cls, store_id: str) -> Keyring:
        return cls(store_id, crypto.random_key(), crypto.random_key())

    def dataset_key(self, dataset: str) -> bytes:
        return crypto.derive_key(self.master, "dataset", dataset.encode())

    @property
    def convergence_secret(self) -> bytes:
        return crypto.derive_key(self.master, "convergence")

    @property
    def key_check(self) -> str:
        return crypto.derive_key(self.master, "key check").hex()[:32]

    @property
    def signing_key(self) -> SigningKey:
        if self.signing_seed is None:
            raise KeyringError(
                f"the keyring of store {self.store_id} cannot sign tags (a reader's keyring)"
            )
        return SigningKey(self.signing_seed)

    @property
    def signer_public(self) -> bytes | None:
        return bytes(self.signing_key.verify_key) if self.signing_seed else None

    @property
    def trusted(self) -> tuple[bytes, ...]:
        own = self.signer_public
        return (*self.trusted_signers, *([own] if own else []))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": KEYRING_FORMAT,
                "store_id": self.store_id,
                "master": self.master.hex(),
                "signing_seed": self.signing_seed.hex() if self.signing_seed else None,
                "trusted_signers": [k.hex() for k in self.trusted_signers],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: Path) -> Keyring:
        try:
            doc = json.loads(text)
            if doc["format"] != KEYRING_FORMAT:
                raise KeyringError(f"{source}: keyring format {doc['format']} is not supported")
            seed = doc.get("signing_seed")
            return cls(
                store_id=str(doc["store_id"]),
                master=bytes.fromhex(doc["master"]),
                signing_seed=bytes.fromhex(seed) if seed else None,
                trusted_signers=tuple(bytes.fromhex(k) for k in doc.get("trusted_signers", [])),
            )
        except KeyringError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{source} is not a valid keyring: {exc}") from None


def keyring_path(keys_dir: Path, store_id: str) -> Path:
    return keys_dir / f"{store_id}.json"


def load_keyring(path: Path) -> Keyring:
    try:
        return Keyring.from_json(path.read_text(), path)
    except FileNotFoundError:
        raise KeyringError(f"no keyring at {path}") from None
    except PermissionError:
        raise KeyringError(f"cannot read the keyring {path}: permission denied") from None


def save_keyring(keyring: Keyring, path: Path) -> None:
    """Write 0600 from the first byte (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keyring.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
