"""What the hub keeps in memory to answer fast: opened manifests, tag heads, pack scopes.

Nothing here is state: every entry is re-derived from the store. Manifests are immutable (an
id names its bytes), so an opened one is never stale; tag heads expire after a few seconds
(moves made through this hub replace them at once); a dataset's pack set only grows while its
tags exist, and is rebuilt when the tags move, when it is old, or before a pack is refused.
All classes are thread-safe: the hub's operations run in worker threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import cachetools

from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.manifest import Manifest
from aetherfs.core.tags import TagHistory
from aetherfs.errors import IntegrityError, NotFound

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A bounded map, least recently used out first; entries older than `ttl` are misses."""

    def __init__(self, size: int, ttl: float = float("inf")) -> None:
        self.size = size
        self.ttl = ttl
        # cachetools' maps are not thread-safe on their own: every use holds the lock.
        self._items: cachetools.Cache[K, V] = (
            cachetools.LRUCache(size)
            if ttl == float("inf")
            else cachetools.TTLCache(size, max(ttl, 0.0), timer=time.monotonic)
        )
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._items[key] = value

    def drop(self, match: Callable[[K], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                with contextlib.suppress(KeyError):  # expired since it was listed
                    del self._items[key]


class ManifestCache:
    """Opened manifests by (dataset, id); `open_manifest` fetches, checks and decrypts one."""

    def __init__(
        self, open_manifest: Callable[[str, ManifestId], Manifest], size: int = 32
    ) -> None:
        self._open = open_manifest
        self._lru: Lru[tuple[str, ManifestId], Manifest] = Lru(size)

    def get(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        manifest = self._lru.get((dataset, manifest_id))
        if manifest is None:
            manifest = self._open(dataset, manifest_id)
            self._lru.put((dataset, manifest_id), manifest)
        return manifest


@dataclass(frozen=True, slots=True)
class _Scope:
    built: float  # time.monotonic() when the tags it was built from were read
    manifests: frozenset[ManifestId]
    packs: frozenset[PackId]


class PackScope:
    """The packs used by the manifests a dataset's tags name, now or in their history.

    A pack is served through a dataset's path only if it is in that set, so a reader of one
    dataset cannot read another's packs by knowing their ids. `read_tags(dataset)` reads the
    dataset's tag histories from the store; `manifests` opens the manifests they name.
    """

    def __init__(
        self,
        read_tags: Callable[[str], dict[str, TagHistory]],
        manifests: ManifestCache,
        max_age: float = 30.0,
    ) -> None:
        self._read_tags = read_tags
        self._manifests = manifests
        self.max_age = max_age
        self._scopes: dict[str, _Scope] = {}
        # The packs of one manifest (immutable), so a rebuild opens only new manifests.
        self._manifest_packs: Lru[tuple[str, ManifestId], frozenset[PackId]] = Lru(4096)
        self._lock = threading.Lock()
        self._refreshing: dict[str, threading.Lock] = {}

    def allows(self, dataset: str, pack_id: PackId) -> bool:
        """Whether `pack_id` is one of `dataset`'s packs; rebuilds the set before saying no."""
        asked = time.monotonic()
        scope = self._scopes.get(dataset)
        if scope is not None and asked - scope.built < self.max_age and pack_id in scope.packs:
            return True
        with self._lock:
            refreshing = self._refreshing.setdefault(dataset, threading.Lock())
        with refreshing:  # one rebuild at a time per dataset; the others wait and reuse it
            scope = self._scopes.get(dataset)
            if scope is None or scope.built < asked:
                scope = self._build(dataset, self._read_tags(dataset), time.monotonic())
        return pack_id in scope.packs

    def update(self, dataset: str, tags: dict[str, TagHistory], read_at: float) -> None:
        """The dataset's tags as read at `read_at` (by the watcher or after a move)."""
        scope = self._scopes.get(dataset)
        if scope is None or scope.built < read_at:
            self._build(dataset, tags, read_at)

    def drop(self, dataset: str) -> None:
        with self._lock:
            self._scopes.pop(dataset, None)
        self._manifest_packs.drop(lambda key: key[0] == dataset)

    def _build(self, dataset: str, tags: dict[str, TagHistory], read_at: float) -> _Scope:
        named = frozenset(
            signed.record.manifest_id for history in tags.values() for signed in history.records
        )
        old = self._scopes.get(dataset)
        if old is not None and old.manifests == named:
            scope = _Scope(read_at, named, old.packs)
        else:
            packs: set[PackId] = set()
            for manifest_id in named:
                packs |= self._packs_of(dataset, manifest_id)
            scope = _Scope(read_at, named, frozenset(packs))
        with self._lock:
            current = self._scopes.get(dataset)
            if current is None or current.built <= read_at:
                self._scopes[dataset] = scope
        return scope

    def _packs_of(self, dataset: str, manifest_id: ManifestId) -> frozenset[PackId]:
        packs = self._manifest_packs.get((dataset, manifest_id))
        if packs is None:
            try:
                manifest = self._manifests.get(dataset, manifest_id)
            except (NotFound, IntegrityError):
                packs = frozenset()  # gone, damaged or not this dataset's: it lends no pack
            else:
                packs = frozenset(
                    ref.pack for ref in manifest.unique_blocks().values() if ref.pack is not None
                )
            self._manifest_packs.put((dataset, manifest_id), packs)
        return packs
