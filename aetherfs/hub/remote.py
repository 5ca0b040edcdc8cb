"""The CLI's seam to a hub: a Repository whose every operation is a call to the hub.

`HubRepository` subclasses Repository and overrides each method the CLI and the ops use, so
push, pull, tag, tags, ls, inspect and diff run unchanged whether they hold a store or a
hub. What it gets from the hub it checks as it would on a store: tag records are verified
against the registry's signing key, manifests are opened with the dataset key (which the hub
hands to readers) and checked against their id, blocks against theirs.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aetherfs.core.blocks import BlockRef, verify_block
from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.manifest import Manifest
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.core.packs import ReadRange
from aetherfs.core.tags import SignedTag, TagHistory
from aetherfs.errors import Forbidden, IntegrityError, InvalidInput, KeyringError, NotFound
from aetherfs.hub.client import HubClient
from aetherfs.keys import Keyring
from aetherfs.repo import Repository
from aetherfs.store.base import Versioned


@dataclass(frozen=True, slots=True)
class HubKeyring(Keyring):
    """The keys a hub gave this principal: dataset keys, and the convergence secret if it
    may write. It never holds the master secret or the registry's signing key."""

    fetch: Callable[[str], dict[str, Any]] | None = field(default=None, compare=False)
    granted: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def keys_for(self, dataset: str) -> dict[str, Any]:
        if dataset not in self.granted:
            if self.fetch is None:
                raise KeyringError(f"no keys for {dataset}")
            self.granted[dataset] = self.fetch(dataset)
        return self.granted[dataset]

    def dataset_key(self, dataset: str) -> bytes:
        return bytes.fromhex(self.keys_for(dataset)["dataset_key"])

    @property
    def convergence_secret(self) -> bytes:
        for keys in self.granted.values():
            if keys.get("convergence_secret"):
                return bytes.fromhex(keys["convergence_secret"])
        raise Forbidden(
            "not allowed: the hub gives the convergence secret to writers only; ask an admin "
            "of the dataset for the write role"
        )

    @property
    def key_check(self) -> str:
        return ""


class HubEndpoint:
    """Stands where a Repository keeps its Store: through a hub there is none to touch."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _refuse(self, *args: object) -> Any:
        raise InvalidInput(f"this operation needs direct store access, not the hub {self.url}")

    def get(self, key: str) -> bytes:
        return self._refuse(key)  # type: ignore[no-any-return]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._refuse(key)  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        return self._refuse(key)  # type: ignore[no-any-return]

    def put(self, key: str, data: bytes) -> None:
        self._refuse(key)

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        return self._refuse(key)  # type: ignore[no-any-return]

    def put_file_if_absent(self, key: str, file: BinaryIO) -> bool:
        return self._refuse(key)  # type: ignore[no-any-return]

    def get_versioned(self, key: str) -> Versioned:
        return self._refuse(key)  # type: ignore[no-any-return]

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        return self._refuse(key)  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        self._refuse(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self._refuse(prefix)  # type: ignore[no-any-return]

    def size(self, key: str) -> int:
        return self._refuse(key)  # type: ignore[no-any-return]

    def mtime(self, key: str) -> float:
        return self._refuse(key)  # type: ignore[no-any-return]


class HubRepository(Repository):
    def __init__(self, client: HubClient) -> None:
        self.client = client
        info = client.info()
        trusted = tuple(bytes.fromhex(k) for k in info["trusted_signers"])
        keyring = HubKeyring(
            store_id=str(info["store_id"]),
            master_secret=None,
            signing_seed=None,
            trusted_signers=trusted,
            fetch=client.keys,
        )
        super().__init__(HubEndpoint(client.url), keyring)
        self.hub_keyring = keyring
        # Packs are reached through a dataset's path (its ACL decides); the ops work on one
        # dataset at a time, so the last one named is the one to go through.
        self._dataset: str | None = None

    def _through(self) -> str:
        if self._dataset is None:
            raise InvalidInput("name a dataset before reading or writing packs through a hub")
        return self._dataset

    # Packs ------------------------------------------------------------------------------
    def put_pack(self, pack_id: PackId, data: bytes | memoryview) -> bool:
        if PackId.of(data) != pack_id:
            raise IntegrityError(f"pack {pack_id.short()} does not match its id")
        body = data if isinstance(data, bytes) else bytes(data)  # httpx sends bytes
        return self.client.put_pack(self._through(), pack_id.hex(), body)

    def has_pack(self, pack_id: PackId) -> bool:
        return self.client.has_pack(self._through(), pack_id.hex())

    def lease_store(self) -> None:
        return None  # the hub's store is not ours to write leases on

    def read_range(self, read: ReadRange) -> Iterator[tuple[BlockRef, bytes]]:
        """One ranged GET through the hub; each block checked against its id."""
        data = self.client.get_pack_range(self._through(), read.pack.hex(), read.start, read.length)
        if len(data) != read.length:
            raise IntegrityError(f"pack {read.pack.short()} is shorter than its manifest says")
        for ref, stored in read.cut(data):
            verify_block(ref.id, stored)
            yield ref, stored

    # Tags -------------------------------------------------------------------------------
    def _verify(self, doc: dict[str, Any], dataset: str, tag: str) -> SignedTag:
        signed = SignedTag.verify(base64.b64decode(doc["signed"]), self.keyring.trusted)
        if (signed.record.dataset, signed.record.tag) != (dataset, tag):
            raise IntegrityError(f"the hub answered for {dataset}:{tag} with another tag")
        return signed

    def tag_history(self, dataset: str, tag: str) -> TagHistory:
        records = tuple(
            self._verify(doc, dataset, tag) for doc in self.client.tag_history(dataset, tag)
        )
        if not records:
            raise NotFound(f"{dataset}:{tag} does not exist")
        for older, newer in itertools.pairwise(records):
            if newer.record.seq <= older.record.seq:
                raise IntegrityError(f"the hub's history of {dataset}:{tag} goes backwards")
        return TagHistory(records)

    def resolve(self, dataset: str, tag: str) -> SignedTag:
        check_tag(tag)
        self._dataset = dataset
        doc = self.client.json("GET", self.client.dataset_path(dataset, f"tags/{tag}"))
        return self._verify(doc, dataset, tag)

    def list_tags(self, dataset: str) -> dict[str, TagHistory]:
        return {tag: self.tag_history(dataset, tag) for tag in self.client.list_tags(dataset)}

    def set_tag(self, dataset: str, tag: str, manifest_id: ManifestId) -> SignedTag:
        check_dataset_name(dataset)
        check_tag(tag)
        return self._verify(self.client.set_tag(dataset, tag, manifest_id.hex()), dataset, tag)

    # Datasets ---------------------------------------------------------------------------
    def list_datasets(self) -> list[str]:
        return [str(d["name"]) for d in self.client.list_datasets()]

    def ensure_dataset(self, dataset: str) -> None:
        check_dataset_name(dataset)
        if not self.client.dataset_exists(dataset):
            try:
                self.client.create_dataset(dataset)
            except Forbidden:
                raise Forbidden(
                    f"dataset {dataset} does not exist on the hub and only hub admins create "
                    "datasets: ask one to create it and grant you write"
                ) from None
        self.hub_keyring.keys_for(dataset)  # the writer's keys, before anything is sealed
        self._dataset = dataset

    # Manifests --------------------------------------------------------------------------
    def _store_manifest(self, dataset: str, manifest_id: ManifestId, sealed: BinaryIO) -> None:
        # The hub opens and checks a manifest whole before it stores it: sent in one body.
        self.client.put_manifest(dataset, manifest_id.hex(), sealed.read())

    def _fetch_manifest(self, dataset: str, manifest_id: ManifestId) -> bytes:
        self._dataset = dataset
        return self.client.get_manifest(dataset, manifest_id.hex())

    def get_manifest(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        self._dataset = dataset
        return super().get_manifest(dataset, manifest_id)
