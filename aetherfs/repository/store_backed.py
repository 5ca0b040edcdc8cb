"""A store plus its keyring: blocks, manifests, datasets and signed tags, verified both ways.

Everything the CLI, the hub and agents do to a store goes through here, so the checks live in
one place: ids are verified on every read, manifests decrypted and validated, tag signatures
and sequence numbers enforced, and tag updates done by compare-and-swap. It is one of the two
`Repository` implementations (`aetherfs/repository/__init__.py`); the other goes through a hub.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId, ManifestId, PackId
from aetherfs.core.manifest import MAX_MANIFEST_BYTES, Manifest, open_manifest
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.core.packs import ReadRange
from aetherfs.core.tags import Salvage, SignedTag, TagHistory, TagRecord, TagScan, salvage
from aetherfs.core.trust import TrustedTag
from aetherfs.errors import Conflict, IntegrityError, InvalidInput, KeyringError, NotFound
from aetherfs.keys import Keyring, Notice, keyring_path, load_keyring, save_keyring, to_stderr
from aetherfs.repository.cas import compare_and_swap
from aetherfs.repository.reading import (
    SPOOL_ABOVE,
    ManifestReader,
    cut_verified,
    every_history,
    gather_blocks,
    known_blocks,
    scan_histories,
)
from aetherfs.store import layout
from aetherfs.store.base import Store

STORE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A dataset's metadata as stored (`datasets/<name>/@dataset.json`)."""

    name: str
    created: float | None

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "created": self.created}).encode()

    @classmethod
    def from_json(cls, name: str, raw: bytes) -> DatasetInfo:
        try:
            created = json.loads(raw).get("created")
        except (ValueError, AttributeError):
            created = None  # unreadable metadata names no time; the dataset still exists
        return cls(name, float(created) if isinstance(created, int | float) else None)


@dataclass(frozen=True, slots=True)
class VerifiedManifest:
    """A manifest's sealed bytes, and the manifest they open to (a delta stays a delta)."""

    stored: bytes
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class TagUpdate:
    """What `update_tag` did: the tag's record now, and whether this call wrote it."""

    signed: SignedTag
    moved: bool


@dataclass(frozen=True, slots=True)
class StoreInfo:
    store_id: str
    key_check: str
    signer: bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": STORE_FORMAT,
                "store_id": self.store_id,
                "key_check": self.key_check,
                "signer": self.signer.hex(),
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StoreInfo:
        try:
            doc = json.loads(raw)
            store_id, check, signer = doc.get("store_id"), doc.get("key_check"), doc.get("signer")
            if isinstance(store_id, str) and isinstance(check, str) and isinstance(signer, str):
                return cls(store_id, check, bytes.fromhex(signer))
        except (ValueError, AttributeError):
            pass
        raise IntegrityError(
            f"the store's {layout.STORE_INFO} is malformed (it must name the store's id, key "
            "check and signer): restore it from a backup"
        )


def open_keyring(
    store: Store,
    keys_dir: Path,
    keys_path: Path | None,
    create: bool,
    notice: Notice = to_stderr,
) -> Keyring:
    """Find the keyring for `store`. With `create` (commands that write), the keyring must
    be a writer's, and a store that does not exist yet is made (said through `notice`);
    without it, a missing store is an error and nothing is written."""
    try:
        info: StoreInfo | None = StoreInfo.from_json(store.get(layout.STORE_INFO))
    except NotFound:
        info = None
    if info is None:
        if not create:
            raise NotFound(
                f"there is no AetherFS store at {store.url} (it has no {layout.STORE_INFO}): "
                "check the URL; the first push to a new URL creates a store there"
            )
        keyring = load_keyring(keys_path, notice) if keys_path and keys_path.exists() else None
        keyring = keyring or Keyring.generate(str(uuid.uuid4()))
        public = keyring.signer_public
        if public is None or not keyring.can_write:
            raise KeyringError("a reader's keyring cannot initialise a store")
        candidate = StoreInfo(keyring.store_id, keyring.key_check, public)
        if store.put_if_absent(layout.STORE_INFO, candidate.to_json()):
            path = keys_path or keyring_path(keys_dir, keyring.store_id)
            save_keyring(keyring, path)
            notice(
                f"created a new store at {store.url} (id {keyring.store_id}); its keyring: {path}"
            )
            return keyring
        info = StoreInfo.from_json(store.get(layout.STORE_INFO))  # another writer won the race
    path = keys_path or keyring_path(keys_dir, info.store_id)
    if not path.exists():
        raise KeyringError(
            f"no keyring at {path}. The store {store.url} (id {info.store_id}) was created "
            f"with another keyring: copy it (or a reader's keyring exported from it) to {path}, "
            "or pass --keys FILE"
        )
    keyring = load_keyring(path, notice)
    if keyring.store_id != info.store_id or keyring.key_check != info.key_check:
        raise KeyringError(
            f"the keyring {path} is not the key of the store {store.url} (store id "
            f"{info.store_id}); refusing to decrypt with a wrong key"
        )
    if create:
        keyring.require_writer(f"writing to the store {store.url}")
    return keyring


class StoreRepository:
    """The repository on a store the caller holds directly (with its keyring).

    Besides what every `Repository` does, it serves what only a store's owner may: the store
    itself (gc, the hub's own objects), damaged-tag scans and repairs, stored manifests as
    they are. Safe to share between threads.
    """

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        manifest_cache: Path | None = None,
        spool_above: int = SPOOL_ABOVE,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.manifests = ManifestReader(
            self._fetch_manifest, keyring.dataset_key, manifest_cache, spool_above
        )

    @property
    def url(self) -> str:
        return self.store.url

    # Packs and blocks -------------------------------------------------------------------
    # `dataset` names whose blocks they are: a store holds one pool of packs for all, so it
    # is not needed here, but a hub checks each read against it.
    def put_pack(self, dataset: str, pack_id: PackId, data: bytes | memoryview) -> bool:
        """Store a pack of sealed blocks; False if it was already there.

        `data` may view a buffer the caller reuses afterwards: nothing keeps it.
        """
        if PackId.of(data) != pack_id:
            raise IntegrityError(f"pack {pack_id.short()} does not match its id")
        return self.store.put_if_absent(layout.pack_key(pack_id), data)

    def has_pack(self, dataset: str, pack_id: PackId) -> bool:
        return self.store.exists(layout.pack_key(pack_id))

    def read_range(self, dataset: str, read: ReadRange) -> Iterator[tuple[BlockRef, bytes]]:
        """One ranged GET; each block in it checked against its id."""
        return cut_verified(read, self._range_bytes(dataset, read))

    def _range_bytes(self, dataset: str, read: ReadRange) -> bytes:
        try:
            return self.store.get_range(layout.pack_key(read.pack), read.start, read.length)
        except NotFound:
            raise NotFound(
                f"pack {read.pack.short()} is missing from the store {self.store.url}"
            ) from None

    def get_blocks(
        self, dataset: str, refs: Iterable[BlockRef]
    ) -> dict[BlockId, bytes | memoryview]:
        """The stored bytes of each block, verified, in as few ranged reads as pays (views
        of those reads: `gather_blocks`)."""
        return gather_blocks(self._range_bytes, dataset, refs)

    def lease_store(self) -> Store | None:
        """Where a push announces itself to gc (`ops/push_lease.py`): this store. Through a
        hub there is none to write to, and gc's grace period is what protects such a push."""
        return self.store

    # Manifests --------------------------------------------------------------------------
    def put_sealed_manifest(self, dataset: str, manifest_id: ManifestId, sealed: BinaryIO) -> None:
        """Store a manifest sealed into a file (`seal_pieces`) and keep a local copy: a push
        never holds the sealed bytes in memory."""
        sealed.seek(0)
        self.store.put_file_if_absent(layout.manifest_key(manifest_id), sealed)
        sealed.seek(0)
        self.manifests.keep_local(manifest_id, sealed)

    def _fetch_manifest(self, dataset: str, manifest_id: ManifestId) -> bytes:
        try:
            return self.store.get(layout.manifest_key(manifest_id))
        except NotFound:
            raise NotFound(f"manifest {manifest_id.short()} of {dataset} is missing") from None

    def verified_manifest(
        self, dataset: str, manifest_id: ManifestId, stored: bytes | None = None
    ) -> VerifiedManifest:
        """Check that a manifest is `dataset`'s and sound: its bytes hash to its id, open
        with the dataset's key (which binds the dataset's name) and every entry validates.

        `stored`: bytes to check (an upload not stored yet) instead of the store's copy.
        NotFound if the store has no such manifest; IntegrityError if it is not this
        dataset's or is damaged.
        """
        if stored is None:
            stored = self._fetch_manifest(dataset, manifest_id)
        elif len(stored) > MAX_MANIFEST_BYTES:
            raise InvalidInput("manifest too large")
        elif ManifestId.of(stored) != manifest_id:
            raise IntegrityError(f"the bytes sent do not hash to manifest {manifest_id.short()}")
        key = self.keyring.dataset_key(dataset)
        return VerifiedManifest(stored, open_manifest(manifest_id, stored, dataset, key))

    def put_manifest(
        self,
        dataset: str,
        manifest_id: ManifestId,
        stored: bytes,
        may_use: Callable[[PackId], bool] = lambda _pack: True,
    ) -> bool:
        """Store sealed manifest bytes someone else sealed (a hub's upload), after checking
        them (`verified_manifest`), that a delta's base is stored, and that every block is
        in a stored pack that `may_use` allows; False if it was stored already."""
        manifest = self.verified_manifest(dataset, manifest_id, stored).manifest
        if manifest.base is not None and not self.store.exists(layout.manifest_key(manifest.base)):
            raise NotFound(
                f"manifest {manifest_id.short()} is a delta on {manifest.base.short()}, which "
                "is not in the store: put the base first"
            )
        packs: set[PackId] = set()
        for ref in manifest.unique_blocks().values():
            if ref.pack is None:
                raise IntegrityError(f"block {ref.id.short()} has no pack: upload packs first")
            packs.add(ref.pack)
        for pack_id in sorted(packs):
            if not self.store.exists(layout.pack_key(pack_id)) or not may_use(pack_id):
                raise NotFound(
                    f"pack {pack_id.short()} is not in the store as a pack of {dataset}: "
                    f"upload it through {dataset} first"
                )
        return self.store.put_if_absent(layout.manifest_key(manifest_id), stored)

    def open_stored_manifest(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        """One stored manifest as it is: a delta stays a delta."""
        return self.manifests.open_stored(dataset, manifest_id)

    def get_manifest(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        """The whole version: a delta is resolved against its chain of bases."""
        return self.manifests.get(dataset, manifest_id)

    # Datasets ---------------------------------------------------------------------------
    def ensure_dataset(self, dataset: str) -> None:
        check_dataset_name(dataset)
        meta = DatasetInfo(dataset, time.time()).to_json()
        self.store.put_if_absent(layout.dataset_key(dataset), meta)

    def dataset_exists(self, dataset: str) -> bool:
        return self.store.exists(layout.dataset_key(check_dataset_name(dataset)))

    def dataset_info(self, dataset: str) -> DatasetInfo:
        """The dataset's metadata; NotFound if it does not exist."""
        try:
            raw = self.store.get(layout.dataset_key(check_dataset_name(dataset)))
        except NotFound:
            raise NotFound(f"dataset {dataset} does not exist") from None
        return DatasetInfo.from_json(dataset, raw)

    def create_dataset(self, dataset: str) -> DatasetInfo:
        """Make a new dataset; Conflict if it exists already (one of racing creators wins)."""
        info = DatasetInfo(check_dataset_name(dataset), time.time())
        if not self.store.put_if_absent(layout.dataset_key(dataset), info.to_json()):
            raise Conflict(f"dataset {dataset} already exists")
        return info

    def delete_dataset(self, dataset: str) -> None:
        """Forget a dataset's tags and metadata (NotFound if it does not exist). Its
        manifests and packs stay, for `aetherfs gc` to collect once nothing names them."""
        if not self.dataset_exists(dataset):
            raise NotFound(f"dataset {dataset} does not exist")
        for key in list(self.store.list(layout.tags_prefix(dataset))):
            self.store.delete(key)
        self.store.delete(layout.dataset_key(dataset))

    def list_datasets(self) -> list[str]:
        suffix = "/@dataset.json"
        return [
            key[len(layout.DATASETS) : -len(suffix)]
            for key in self.store.list(layout.DATASETS)
            if key.endswith(suffix)
        ]

    # Tags -------------------------------------------------------------------------------
    def tag_history(self, dataset: str, tag: str) -> TagHistory:
        try:
            raw = self.store.get(layout.tag_key(dataset, tag))
        except NotFound:
            raise NotFound(f"{dataset}:{tag} does not exist") from None
        history = self._parse_history(dataset, tag, raw)
        current = history.current.record
        if (current.dataset, current.tag) != (dataset, tag):
            raise IntegrityError(f"the record stored for {dataset}:{tag} names another tag")
        return history

    def _parse_history(self, dataset: str, tag: str, raw: bytes) -> TagHistory:
        try:
            return TagHistory.from_bytes(raw, self.keyring.trusted)
        except IntegrityError as exc:
            raise IntegrityError(
                f"the stored history of {dataset}:{tag} cannot be trusted: {exc}. If the store's "
                f"copy is damaged, an admin repairs it with `aetherfs tag --repair {dataset}:{tag}`"
            ) from None

    def known_blocks(self, dataset: str) -> Iterator[bytes]:
        """The located records of every block of every tagged version of `dataset`."""
        return known_blocks(self.list_tags, self.get_manifest, dataset)

    def resolve(self, dataset: str, tag: str) -> SignedTag:
        return self.tag_history(dataset, tag).current

    def list_tags(self, dataset: str) -> dict[str, TagHistory]:
        """Every tag's history; one that cannot be trusted is an error (gc must see them all)."""
        return every_history(self.scan_tags(dataset))

    def scan_tags(self, dataset: str) -> TagScan:
        """Every tag's history, and why each one that cannot be trusted was left out."""
        prefix = layout.tags_prefix(dataset)
        tags = [key[len(prefix) :] for key in self.store.list(prefix)]
        return scan_histories(self.tag_history, dataset, [t for t in tags if "/" not in t])

    def set_tag(
        self, dataset: str, tag: str, manifest_id: ManifestId, expect_seq: int | None = None
    ) -> SignedTag:
        """Point `dataset:tag` at a manifest, by compare-and-swap; no update is ever lost.

        With `expect_seq` (0: the tag must not exist yet) the write only happens while the
        tag is at that seq: a caller that read it and decided cannot overwrite a move it did
        not see (Conflict: read it again)."""
        return self.update_tag(dataset, tag, manifest_id, expect_seq).signed

    def update_tag(
        self, dataset: str, tag: str, manifest_id: ManifestId, expect_seq: int | None = None
    ) -> TagUpdate:
        """`set_tag`, saying whether this call wrote a record (False: it was there already)."""
        check_dataset_name(dataset)
        check_tag(tag)
        if not self.store.exists(layout.manifest_key(manifest_id)):
            raise NotFound(f"manifest {manifest_id.short()} is not in the store; push it first")
        key = layout.tag_key(dataset, tag)
        signing_key = self.keyring.signing_key

        def append(raw: bytes | None) -> tuple[bytes | None, TagUpdate]:
            history = self._parse_history(dataset, tag, raw) if raw is not None else None
            seq = history.current.record.seq if history else 0
            if expect_seq is not None and expect_seq != seq:
                raise Conflict(
                    f"{dataset}:{tag} is at seq {seq}, not {expect_seq}: it moved meanwhile; "
                    "read it again and retry"
                )
            if history and history.current.record.manifest_id == manifest_id:
                return None, TagUpdate(history.current, False)  # already there: no record
            record = TagRecord(
                dataset, tag, manifest_id, seq + 1, time.time(), bytes(signing_key.verify_key)
            )
            signed = SignedTag.sign(record, signing_key)
            updated = history.advanced(signed) if history else TagHistory((signed,))
            return updated.to_bytes(), TagUpdate(signed, True)

        busy = f"{dataset}:{tag} is being updated by many writers at once; retry"
        return compare_and_swap(self.store, key, append, busy)

    def repair_tag(
        self,
        dataset: str,
        tag: str,
        known: TrustedTag | None = None,
        manifest_id: ManifestId | None = None,
    ) -> tuple[SignedTag | None, Salvage]:
        """Rewrite a damaged history: the records that still verify, then the newest good one
        re-signed with a seq above any the history held (and above `known`, what this reader
        trusted), so no reader that saw a later record takes the repair for a rollback.

        `manifest_id` names the version when no good record is left. Returns the new record
        (None: nothing was damaged) and what was salvaged.
        """
        check_dataset_name(dataset)
        check_tag(tag)
        key = layout.tag_key(dataset, tag)
        signing_key = self.keyring.signing_key
        try:
            current = self.store.get_versioned(key)
        except NotFound:
            raise NotFound(f"{dataset}:{tag} does not exist: nothing to repair") from None
        found = salvage(current.data, self.keyring.trusted, dataset, tag)
        if not found.damaged:
            return None, found
        last = found.good[-1].record if found.good else None
        if manifest_id is None:
            if last is not None and (known is None or last.seq >= known.seq):
                manifest_id = last.manifest_id
            elif known is not None:
                manifest_id = known.manifest_id
            else:
                raise IntegrityError(
                    f"no record of {dataset}:{tag} can be read, and this machine trusted none: "
                    f"name the version to re-sign: `aetherfs tag --repair {dataset}:{tag} "
                    "--manifest ID`"
                )
        if not self.store.exists(layout.manifest_key(manifest_id)):
            raise NotFound(
                f"manifest {manifest_id.short()} is not in the store: nothing to re-sign"
            )
        seq = max(found.highest_seq, known.seq if known else 0) + 1
        record = TagRecord(
            dataset, tag, manifest_id, seq, time.time(), bytes(signing_key.verify_key)
        )
        signed = SignedTag.sign(record, signing_key)
        # `advanced` keeps the tag rules (a version tag keeps its manifest).
        history = TagHistory(found.good).advanced(signed) if found.good else TagHistory((signed,))
        # Conflict if it changed meanwhile: the admin looks again rather than overwrite a move.
        self.store.put_if_version(key, history.to_bytes(), current.version)
        return signed, found
