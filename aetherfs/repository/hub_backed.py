"""The CLI's and the agent's seam to a hub: a `Repository` whose every call is a request to it.

`HubRepository` implements the same Protocol as the store-backed repository, so push, pull,
tag, tags, ls, inspect, diff and the agent run unchanged whether they hold a store or a hub.
What it gets from the hub it checks as it would on a store: tag records are verified against
the registry's signing key, manifests are opened with the dataset key (which the hub hands to
readers) and checked against their id, blocks against theirs. Packs are reached through the
path of the dataset each call names (its ACL decides), so one repository serves several
datasets from several threads at once. What needs the store itself is not here.
"""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId, ManifestId, PackId
from aetherfs.core.manifest import Manifest
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.core.packs import ReadRange
from aetherfs.core.tags import SignedTag, TagHistory, TagScan
from aetherfs.errors import Forbidden, IntegrityError, KeyringError, NotFound
from aetherfs.repository.hub_client import HubClient
from aetherfs.repository.reading import (
    ManifestReader,
    cut_verified,
    every_history,
    gather_blocks,
    known_blocks,
    scan_histories,
)
from aetherfs.store.base import Store


@dataclass(frozen=True, slots=True)
class HubKeyring:
    """The keys a hub gave this principal: dataset keys, and the convergence secret if it
    may write. It never holds the master secret or the registry's signing key."""

    store_id: str
    trusted_signers: tuple[bytes, ...]
    fetch: Callable[[str], dict[str, Any]] | None = field(default=None, compare=False)
    granted: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def keys_for(self, dataset: str) -> dict[str, Any]:
        with self._lock:
            found = self.granted.get(dataset)
        if found is None:
            if self.fetch is None:
                raise KeyringError(f"no keys for {dataset}")
            found = self.fetch(dataset)
            with self._lock:
                self.granted[dataset] = found
        return found

    @property
    def trusted(self) -> tuple[bytes, ...]:
        return self.trusted_signers

    def dataset_key(self, dataset: str) -> bytes:
        return bytes.fromhex(self.keys_for(dataset)["dataset_key"])

    @property
    def convergence_secret(self) -> bytes:
        with self._lock:
            granted = list(self.granted.values())
        for keys in granted:
            if keys.get("convergence_secret"):
                return bytes.fromhex(keys["convergence_secret"])
        raise Forbidden(
            "not allowed: the hub gives the convergence secret to writers only; ask an admin "
            "of the dataset for the write role"
        )


class HubRepository:
    """A `Repository` through a hub's REST API, with the keys the hub hands this principal."""

    def __init__(self, client: HubClient) -> None:
        self.client = client
        info = client.info()
        trusted = tuple(bytes.fromhex(k) for k in info["trusted_signers"])
        self.keyring = HubKeyring(str(info["store_id"]), trusted, fetch=client.keys)
        self.manifests = ManifestReader(self._fetch_manifest, self.keyring.dataset_key)

    def lease_store(self) -> Store | None:
        return None  # the hub's store is not ours to write leases on

    @property
    def url(self) -> str:
        return self.client.url

    # Packs and blocks -------------------------------------------------------------------
    def put_pack(self, dataset: str, pack_id: PackId, data: bytes | memoryview) -> bool:
        if PackId.of(data) != pack_id:
            raise IntegrityError(f"pack {pack_id.short()} does not match its id")
        body = data if isinstance(data, bytes) else bytes(data)  # httpx sends bytes
        return self.client.put_pack(dataset, pack_id.hex(), body)

    def has_pack(self, dataset: str, pack_id: PackId) -> bool:
        return self.client.has_pack(dataset, pack_id.hex())

    def read_range(self, dataset: str, read: ReadRange) -> Iterator[tuple[BlockRef, bytes]]:
        """One ranged GET through the hub; each block checked against its id."""
        return cut_verified(read, self._range_bytes(dataset, read))

    def _range_bytes(self, dataset: str, read: ReadRange) -> bytes:
        return self.client.get_pack_range(dataset, read.pack.hex(), read.start, read.length)

    def get_blocks(
        self, dataset: str, refs: Iterable[BlockRef]
    ) -> dict[BlockId, bytes | memoryview]:
        return gather_blocks(self._range_bytes, dataset, refs)

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
        doc = self.client.json("GET", self.client.dataset_path(dataset, f"tags/{tag}"))
        return self._verify(doc, dataset, tag)

    def list_tags(self, dataset: str) -> dict[str, TagHistory]:
        """Every tag's history; one that cannot be trusted is an error, as on a store."""
        return every_history(self.scan_tags(dataset))

    def scan_tags(self, dataset: str) -> TagScan:
        """Every tag's history, and why each one that cannot be trusted was left out: those
        the hub found damaged on its store (the dataset names them), and those whose records
        do not verify here."""
        check_dataset_name(dataset)
        doc = self.client.dataset(dataset)
        damaged = {str(tag): f"hub: {why}" for tag, why in (doc.get("damaged") or {}).items()}
        return scan_histories(self.tag_history, dataset, doc.get("tags") or {}, damaged)

    def known_blocks(self, dataset: str) -> Iterator[bytes]:
        return known_blocks(self.list_tags, self.get_manifest, dataset)

    def set_tag(
        self, dataset: str, tag: str, manifest_id: ManifestId, expect_seq: int | None = None
    ) -> SignedTag:
        check_dataset_name(dataset)
        check_tag(tag)
        doc = self.client.set_tag(dataset, tag, manifest_id.hex(), expect_seq)
        return self._verify(doc, dataset, tag)

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
        self.keyring.keys_for(dataset)  # the writer's keys, before anything is sealed

    # Manifests --------------------------------------------------------------------------
    def put_sealed_manifest(self, dataset: str, manifest_id: ManifestId, sealed: BinaryIO) -> None:
        # The hub opens and checks a manifest whole before it stores it: sent in one body.
        sealed.seek(0)
        self.client.put_manifest(dataset, manifest_id.hex(), sealed.read())

    def _fetch_manifest(self, dataset: str, manifest_id: ManifestId) -> bytes:
        return self.client.get_manifest(dataset, manifest_id.hex())

    def get_manifest(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        """The whole version: a delta is resolved against its chain of bases."""
        return self.manifests.get(dataset, manifest_id)
