"""The repository layer: what the CLI, the ops and the agent do to datasets, as one interface.

`Repository` is a Protocol with two implementations: `StoreRepository` (`store_backed.py`), on
a store held directly with its keyring, and `HubRepository` (`hub_backed.py`), every call a
request to a hub (`hub_client.py`). Both verify what they read the same way (`reading.py`).
Every pack and block call names its dataset, so one repository serves several datasets from
several threads at once (through a hub each dataset's ACL decides which packs it reaches).
Both list a dataset's tags setting aside the ones that do not verify (`scan_tags`). What only
a store's owner can do (gc, tag repair, verified manifest uploads, dataset creation and
deletion, the hub's own objects) exists on `StoreRepository` alone; a caller that needs it
asks for one.

The layer imports only `core`, `errors`, `store`, `config`, `http` and itself (with the keyring
file, `keys.py`, and the record spool, `spool.py`): `tests/test_layers.py` checks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId, ManifestId, PackId
from aetherfs.core.manifest import Manifest
from aetherfs.core.packs import ReadRange
from aetherfs.core.tags import SignedTag, TagHistory, TagScan
from aetherfs.repository.store_backed import (
    DatasetInfo,
    StoreInfo,
    StoreRepository,
    TagUpdate,
    VerifiedManifest,
    open_keyring,
)
from aetherfs.store.base import Store

__all__ = [
    "DatasetInfo",
    "Keys",
    "Repository",
    "StoreInfo",
    "StoreRepository",
    "TagUpdate",
    "VerifiedManifest",
    "open_keyring",
]


class Keys(Protocol):
    """The keys a repository holds: a store's keyring, or what a hub handed this principal."""

    @property
    def store_id(self) -> str: ...

    @property
    def trusted(self) -> tuple[bytes, ...]:
        """Public keys whose tag signatures are accepted."""
        ...

    @property
    def convergence_secret(self) -> bytes:
        """Keys every block a writer seals (Forbidden for a reader through a hub)."""
        ...

    def dataset_key(self, dataset: str) -> bytes: ...


class Repository(Protocol):
    """Datasets, their tags, manifests and blocks: every read verified, every write sealed."""

    @property
    def keyring(self) -> Keys: ...

    @property
    def url(self) -> str:
        """The store's URL, or the hub's."""
        ...

    # Packs and blocks: `dataset` is the dataset whose version needs them.
    def put_pack(self, dataset: str, pack_id: PackId, data: bytes | memoryview) -> bool: ...

    def has_pack(self, dataset: str, pack_id: PackId) -> bool: ...

    def lease_store(self) -> Store | None:
        """Where a push announces the packs it is about to name to gc (`ops/push_lease.py`);
        None where the client does not own the store (through a hub)."""
        ...

    def read_range(self, dataset: str, read: ReadRange) -> Iterator[tuple[BlockRef, bytes]]: ...

    def get_blocks(
        self, dataset: str, refs: Iterable[BlockRef]
    ) -> dict[BlockId, bytes | memoryview]:
        """Each block's stored bytes, verified; views of the ranged reads they came in."""
        ...

    # Manifests
    def put_sealed_manifest(
        self, dataset: str, manifest_id: ManifestId, sealed: BinaryIO
    ) -> None: ...

    def get_manifest(self, dataset: str, manifest_id: ManifestId) -> Manifest: ...

    def known_blocks(self, dataset: str) -> Iterator[bytes]: ...

    # Datasets
    def ensure_dataset(self, dataset: str) -> None: ...

    def list_datasets(self) -> list[str]: ...

    # Tags
    def tag_history(self, dataset: str, tag: str) -> TagHistory: ...

    def resolve(self, dataset: str, tag: str) -> SignedTag: ...

    def list_tags(self, dataset: str) -> dict[str, TagHistory]:
        """Every tag's history; one that cannot be trusted is an error (gc must see them all)."""
        ...

    def scan_tags(self, dataset: str) -> TagScan:
        """Every tag's history that verifies, and why each other one was left out."""
        ...

    def set_tag(
        self, dataset: str, tag: str, manifest_id: ManifestId, expect_seq: int | None = None
    ) -> SignedTag:
        """Point the tag at a manifest; with `expect_seq` (0: new tag) only while the tag is
        at that seq, else Conflict."""
        ...
