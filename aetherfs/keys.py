"""Keyrings: the secrets of one store, kept outside it (0600 files, one per store id).

Two kinds. A *writer's* keyring holds one 32-byte master secret, which derives each dataset's
key (`dataset` context), the namespace's convergence secret (`convergence`), the key check and
the fleet secret; and an Ed25519 seed that signs tag records. A *reader's* keyring
(`aetherfs keys export --reader`) holds only what reading needs: the keys of the datasets it
was given, the signers to trust, the store's key check and the fleet secret. The store only
holds the key check value, so a wrong keyring is reported before anything is decrypted.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from aetherfs.core import crypto
from aetherfs.errors import KeyringError

KEYRING_FORMAT = 1  # a writer's keyring: readable by every release since the first
READER_FORMAT = 2  # a reader's keyring: older releases refuse it by its format number
READER_KIND = "reader"

Notice = Callable[[str], None]


def to_stderr(message: str) -> None:
    """The default way to tell the user something that is not an error."""
    print(f"aetherfs: {message}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class Keyring:
    """A writer's keyring, or the base of the other kinds (`master_secret` None there)."""

    store_id: str
    master_secret: bytes | None
    signing_seed: bytes | None  # None on a reader's keyring
    trusted_signers: tuple[bytes, ...] = ()

    @classmethod
    def generate(cls, store_id: str) -> Keyring:
        return cls(store_id, crypto.random_key(), crypto.random_key())

    @property
    def master(self) -> bytes:
        if self.master_secret is None:
            raise KeyringError(
                f"the keyring of store {self.store_id} holds no master secret (a reader's "
                "keyring): this needs the producer's keyring"
            )
        return self.master_secret

    @property
    def can_write(self) -> bool:
        return self.master_secret is not None and self.signing_seed is not None

    def require_writer(self, what: str) -> None:
        """Refuse `what` (a command) before it writes anything, on a keyring that cannot write."""
        if not self.can_write:
            raise KeyringError(
                f"{what} needs the producer's keyring; this is a reader's keyring of store "
                f"{self.store_id}, which can only read"
            )

    def dataset_key(self, dataset: str) -> bytes:
        return crypto.derive_key(self.master, "dataset", dataset.encode())

    @property
    def convergence_secret(self) -> bytes:
        return crypto.derive_key(self.master, "convergence")

    @property
    def key_check(self) -> str:
        return crypto.derive_key(self.master, "key check").hex()[:32]

    @property
    def fleet_secret(self) -> bytes:
        """Admits agents that read the store directly to its fleet's peers."""
        return crypto.derive_key(self.master, "fleet secret")

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

    def for_reader(self, datasets: Iterable[str]) -> ReaderKeyring:
        """A reader's keyring for `datasets`: no master, no convergence secret, no seed."""
        return ReaderKeyring(
            store_id=self.store_id,
            master_secret=None,
            signing_seed=None,
            trusted_signers=tuple(dict.fromkeys(self.trusted)),
            dataset_keys={name: self.dataset_key(name) for name in sorted(set(datasets))},
            check=self.key_check,
            fleet=self.fleet_secret,
        )

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
        except ValueError:
            raise KeyringError(f"{source} is not a keyring: it is not JSON") from None
        if not isinstance(doc, dict):
            raise KeyringError(f"{source} is not a keyring: it is not a JSON object")
        fields = _Fields(doc, source)
        version = doc.get("format")
        if version == KEYRING_FORMAT:
            seed = fields.optional_secret("signing_seed", "its signing seed")
            return Keyring(
                store_id=fields.text("store_id", "the id of its store"),
                master_secret=fields.secret("master", "its master secret"),
                signing_seed=seed,
                trusted_signers=fields.signers(),
            )
        if version == READER_FORMAT and doc.get("kind") == READER_KIND:
            return ReaderKeyring(
                store_id=fields.text("store_id", "the id of its store"),
                master_secret=None,
                signing_seed=None,
                trusted_signers=fields.signers(),
                dataset_keys=fields.dataset_keys(),
                check=fields.text("key_check", "the key check of its store"),
                fleet=fields.secret("fleet_secret", "its fleet secret"),
            )
        if version is None:
            raise KeyringError(f"{source} is not a keyring: it says nothing of its format")
        raise KeyringError(
            f"{source}: keyring format {version!r} is not supported by this release of aetherfs"
        )


@dataclass(frozen=True, slots=True)
class ReaderKeyring(Keyring):
    """What a reader holds: the keys of some datasets, never what writes or opens the rest."""

    dataset_keys: Mapping[str, bytes] = field(default_factory=dict, hash=False)
    check: str = ""
    fleet: bytes = b""

    def dataset_key(self, dataset: str) -> bytes:
        try:
            return self.dataset_keys[dataset]
        except KeyError:
            raise KeyringError(
                f"this reader's keyring of store {self.store_id} has no key for the dataset "
                f"{dataset}: ask its producer for one (`aetherfs keys export --reader FILE "
                f"--dataset {dataset}`)"
            ) from None

    @property
    def convergence_secret(self) -> bytes:
        raise KeyringError(
            f"a reader's keyring of store {self.store_id} cannot seal blocks: pushing needs "
            "the producer's keyring"
        )

    @property
    def key_check(self) -> str:
        return self.check

    @property
    def fleet_secret(self) -> bytes:
        return self.fleet

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": READER_FORMAT,
                "kind": READER_KIND,
                "store_id": self.store_id,
                "key_check": self.check,
                "fleet_secret": self.fleet.hex(),
                "trusted_signers": [k.hex() for k in self.trusted_signers],
                "datasets": {name: key.hex() for name, key in sorted(self.dataset_keys.items())},
            },
            indent=2,
        )


class _Fields:
    """Reads a keyring's fields, saying in words what is missing or wrong."""

    def __init__(self, doc: dict[str, Any], source: Path) -> None:
        self.doc = doc
        self.source = source

    def _bad(self, what: str, problem: str) -> KeyringError:
        return KeyringError(f"{self.source} is not a valid keyring: {what} {problem}")

    def text(self, name: str, what: str) -> str:
        value = self.doc.get(name)
        if not isinstance(value, str) or not value:
            raise self._bad(what, "is missing")
        return value

    def secret(self, name: str, what: str) -> bytes:
        if self.doc.get(name) is None:
            raise self._bad(what, "is missing")
        return self._key(self.doc[name], what)

    def optional_secret(self, name: str, what: str) -> bytes | None:
        value = self.doc.get(name)
        return None if value is None else self._key(value, what)

    def _key(self, value: object, what: str) -> bytes:
        try:
            key = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            key = b""
        if len(key) != crypto.KEY_SIZE:
            raise self._bad(what, f"is not {crypto.KEY_SIZE} bytes of hex")
        return key

    def signers(self) -> tuple[bytes, ...]:
        value = self.doc.get("trusted_signers", [])
        if not isinstance(value, list):
            raise self._bad("its trusted signers", "are not a list")
        return tuple(self._key(k, "a trusted signer's public key") for k in value)

    def dataset_keys(self) -> dict[str, bytes]:
        value = self.doc.get("datasets")
        if not isinstance(value, dict):
            raise self._bad("its dataset keys", "are missing")
        return {
            str(name): self._key(key, f"the key of dataset {name}") for name, key in value.items()
        }


def keyring_path(keys_dir: Path, store_id: str) -> Path:
    return keys_dir / f"{store_id}.json"


def load_keyring(path: Path, notice: Notice = to_stderr) -> Keyring:
    """Read a keyring; warn (through `notice`) when others may read it, as ssh does."""
    try:
        with path.open() as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            text = f.read()
    except FileNotFoundError:
        raise KeyringError(f"no keyring at {path}") from None
    except PermissionError:
        raise KeyringError(f"cannot read the keyring {path}: permission denied") from None
    except IsADirectoryError:
        raise KeyringError(f"the keyring {path} is a directory, not a file") from None
    keyring = Keyring.from_json(text, path)
    if mode & 0o077:
        notice(
            f"warning: the keyring {path} can be read by other users (mode {mode:04o}): "
            f"whoever reads it can decrypt the store's datasets; run `chmod 600 {path}`"
        )
    return keyring


def save_keyring(keyring: Keyring, path: Path, replace: bool = True) -> None:
    """Write 0600 from the first byte (never world-readable, even briefly).

    With `replace` False, an existing file at `path` is never overwritten (KeyringError).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(keyring.to_json())
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: never clobbers a keyring
            except FileExistsError:
                raise KeyringError(
                    f"{path} already exists: remove it or name another file"
                ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
