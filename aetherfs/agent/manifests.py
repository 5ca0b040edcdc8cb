"""The sealed manifests the agent keeps (STATE_DIR/manifests, one file per manifest id), asked
of peers before the store when a channel moves, and served to peers that proved the dataset.

The directory is also the repository's manifest cache (`ManifestReader.manifest_cache`): a
manifest read from the store lands here, and one here is opened without a store read. Bytes
from a peer are verified exactly as a store read is (id = BLAKE3 of the sealed bytes, opened
with the dataset key, every entry valid) before they are written here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TypeVar

from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import MAX_MANIFEST_BYTES, Manifest, open_manifest
from aetherfs.errors import AetherError, IntegrityError
from aetherfs.ops.atomic import fsync_dir
from aetherfs.protocol.admission import AccessId
from aetherfs.repository import Repository
from aetherfs.repository.reading import ManifestReader
from aetherfs.swarm.interfaces import Swarm

MANIFEST_TIMEOUT = 2.0  # seconds a build waits for a peer's copy before it reads the store
T = TypeVar("T")


class ManifestShelf:
    """Sealed manifests on local disk, named by id, written temp + fsync + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, manifest_id: ManifestId) -> Path:
        return self.root / manifest_id.hex()

    def has(self, manifest_id: ManifestId) -> bool:
        return self.path(manifest_id).is_file()

    def keep(self, manifest_id: ManifestId, sealed: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{manifest_id.hex()}.{threading.get_ident()}"
        with tmp.open("wb") as out:
            out.write(sealed)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path(manifest_id))
        fsync_dir(self.root)

    def read(self, manifest_id: ManifestId) -> bytes | None:
        """The sealed bytes, if held and still hashing to their id (a damaged copy is
        removed: the next read comes from a peer or the store)."""
        try:
            sealed = self.path(manifest_id).read_bytes()
        except OSError:
            return None
        if ManifestId.of(sealed) != manifest_id:
            self.drop([manifest_id])
            return None
        return sealed

    def size(self, manifest_id: ManifestId) -> int:
        try:
            return self.path(manifest_id).stat().st_size
        except OSError:
            return 0

    def drop(self, manifest_ids: Collection[ManifestId]) -> None:
        for manifest_id in manifest_ids:
            with contextlib.suppress(OSError):
                self.path(manifest_id).unlink()

    def share_with(self, repo: Repository) -> None:
        """Make this the repository's manifest cache (if it has none): manifests it reads
        from the store are kept here, and those here are opened without a store read."""
        reader = getattr(repo, "manifests", None)
        if isinstance(reader, ManifestReader) and reader.manifest_cache is None:
            reader.manifest_cache = self.root


def verify_sealed(
    repo: Repository, dataset: str, manifest_id: ManifestId, sealed: bytes
) -> Manifest:
    """Check bytes from elsewhere as a store read is checked (`verified_manifest`): IntegrityError
    (or another AetherError) if they are not `dataset`'s manifest `manifest_id`, sound. Returns
    the stored manifest as it is (a delta stays a delta: its `base` is the next to fetch)."""
    if len(sealed) > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"manifest {manifest_id.short()} is over {MAX_MANIFEST_BYTES:,} bytes")
    if ManifestId.of(sealed) != manifest_id:
        raise IntegrityError(f"the bytes sent do not hash to manifest {manifest_id.short()}")
    return open_manifest(manifest_id, sealed, dataset, repo.keyring.dataset_key(dataset))


def stored_base(repo: Repository, dataset: str, manifest_id: ManifestId) -> ManifestId | None:
    """The base a stored manifest is a delta on (None: a full one), opened from the local copy
    the repository keeps (`ManifestShelf.share_with`)."""
    reader = getattr(repo, "manifests", None)
    if not isinstance(reader, ManifestReader):
        return None
    return reader.open_stored(dataset, manifest_id).base


async def manifest_from_peers(
    swarm: Swarm,
    access: AccessId,
    manifest_id: ManifestId,
    verify: Callable[[bytes], Awaitable[T]],
    refused: Callable[[str], None],
    timeout: float = MANIFEST_TIMEOUT,
) -> tuple[bytes, T] | None:
    """A peer's copy of a sealed manifest, once `verify` passed it; None if no peer sent one
    in time, or the one sent is false (said to `refused` and counted against the peer):
    the caller then reads the store. With the bytes comes what `verify` returned."""
    got = await swarm.fetch_manifest(access, manifest_id, timeout)
    if got is None:
        return None
    try:
        checked = await verify(got.data)
    except AetherError as exc:
        why = f"manifest {manifest_id.short()} from peer {got.peer.raw.hex()[:16]} is false: {exc}"
        refused(why)
        swarm.record_refused(got.peer, why)
        return None
    return got.data, checked


class ServedManifests:
    """The RecordSource the engine serves MANIFEST records from: a manifest is served only
    for the dataset it was verified as (`add`), so a peer that proved one dataset never gets
    another's. Called on worker threads; `add` and `forget` on the trio thread."""

    def __init__(self, shelf: ManifestShelf, access_of: Callable[[str], AccessId | None]) -> None:
        self.shelf = shelf
        self.access_of = access_of
        self._datasets: dict[ManifestId, str] = {}
        self.bases: dict[ManifestId, ManifestId | None] = {}  # the delta chains learnt

    def add(self, manifest_id: ManifestId, dataset: str, base: ManifestId | None) -> None:
        self._datasets[manifest_id] = dataset
        self.bases[manifest_id] = base

    def knows(self, manifest_id: ManifestId) -> bool:
        return manifest_id in self._datasets

    def collected(self, removed: Collection[ManifestId]) -> list[ManifestId]:
        """Versions removed from disk: those of their manifests that no kept version's chain
        needs are forgotten, and returned (to drop from the shelf)."""
        gone = set(removed)
        needed: set[ManifestId] = set()
        for manifest_id in set(self.bases) - gone:
            base = self.bases.get(manifest_id)
            while base is not None and base not in needed:
                needed.add(base)
                base = self.bases.get(base)
        dropped = sorted(gone - needed, key=lambda m: m.digest)
        for manifest_id in dropped:
            self._datasets.pop(manifest_id, None)
            self.bases.pop(manifest_id, None)
        return dropped

    def sealed_manifest(self, dataset: AccessId, manifest_id: ManifestId) -> bytes | None:
        name = self._datasets.get(manifest_id)
        if name is None or self.access_of(name) != dataset:
            return None
        try:
            return self.shelf.read(manifest_id)
        except AetherError:
            return None
