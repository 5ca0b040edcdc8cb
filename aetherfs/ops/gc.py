"""Remove store objects nothing names: packs and manifests left by interrupted pushes.

Live means named by some record in some tag's history (history is kept, so every version a
tag ever named stays pullable), or by a push in progress (`ops/push_lease.py`). Objects younger
than a grace period are spared too.

The order is what keeps gc and a running push apart. gc lists the candidates first, then reads
the leases of pushes in progress, then the tags; a push names a pack in its lease before it
uploads or reuses it and releases its lease only after its tags are written. So a pack a push
will name is either held by a lease gc read, or named by a tag gc read after the lease was
released, or was listed before the push named it: that last kind, the push checks for once
SETTLE has passed since it named it, and gc deletes nothing on a reading of the leases older
than SETTLE (it reads the leases and the tags again first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aetherfs.core.ids import ManifestId
from aetherfs.errors import NotFound, StoreUnavailable
from aetherfs.ops.push_lease import LEASE_TTL, SETTLE
from aetherfs.repository import StoreRepository
from aetherfs.store import layout

DEFAULT_GRACE = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class GcResult:
    live_manifests: int
    live_packs: int
    removed_manifests: tuple[str, ...]
    removed_packs: tuple[str, ...]
    freed_bytes: int
    dry_run: bool
    pushes_in_progress: int = 0
    held_packs: int = 0  # unnamed packs spared because a push in progress will name them


@dataclass(slots=True)
class _Live:
    """What is live so far; it only grows while gc runs."""

    manifests: set[str] = field(default_factory=set)
    packs: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)  # named by pushes in progress
    leases: set[str] = field(default_factory=set)
    stale: dict[str, list[str]] = field(default_factory=dict)  # dead pushes' objects

    def __contains__(self, name: str) -> bool:
        return name in self.manifests or name in self.packs or name in self.held


def collect_garbage(
    repo: StoreRepository,
    grace_seconds: float = DEFAULT_GRACE,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> GcResult:
    cutoff = time.time() - grace_seconds
    # Candidates first: whatever a push names after this point, the readings below see.
    candidates = [
        (key, key.rsplit("/", 1)[-1])
        for prefix in (layout.MANIFESTS, layout.PACKS)
        for key in list(repo.store.list(prefix))
        if _mtime(repo, key) < cutoff
    ]
    live = _Live()
    read_at = _read(repo, live, clock)
    removed: dict[str, list[str]] = {layout.MANIFESTS: [], layout.PACKS: []}
    freed = 0
    for key, name in candidates:
        if name in live:
            continue
        if clock() - read_at > SETTLE / 2:
            read_at = _read(repo, live, clock)
            if clock() - read_at > SETTLE:
                raise StoreUnavailable(
                    "gc could not read the pushes in progress and the tags again within "
                    f"{SETTLE:.0f} s, so it stopped before deleting more (a slow store?); "
                    "run it again"
                )
            if name in live:
                continue
        removed[layout.MANIFESTS if key.startswith(layout.MANIFESTS) else layout.PACKS].append(name)
        freed += repo.store.size(key)
        if not dry_run:
            repo.store.delete(key)
    if not dry_run:
        if clock() - read_at > SETTLE / 2:
            _read(repo, live, clock)  # a push renewed since is not taken for dead
        for keys in live.stale.values():
            for key in sorted(keys, key=lambda k: k.endswith(layout.LEASE)):  # lease last
                repo.store.delete(key)
    return GcResult(
        live_manifests=len(live.manifests),
        live_packs=len(live.packs),
        removed_manifests=tuple(removed[layout.MANIFESTS]),
        removed_packs=tuple(removed[layout.PACKS]),
        freed_bytes=freed,
        dry_run=dry_run,
        pushes_in_progress=len(live.leases),
        held_packs=len(live.held - live.packs),
    )


def _read(repo: StoreRepository, live: _Live, clock: Callable[[], float]) -> float:
    """Read the leases, then the tags (in that order), into `live`; returns when it began."""
    began = clock()
    _read_leases(repo, live)
    _mark(repo, live)
    return began


def _read_leases(repo: StoreRepository, live: _Live) -> None:
    by_lease: dict[str, list[str]] = {}
    for key in repo.store.list(layout.PUSHES):
        by_lease.setdefault(key.rsplit("/", 1)[0], []).append(key)
    now = time.time()
    for lease, keys in by_lease.items():
        head = f"{lease}/{layout.LEASE}"
        alive = head in keys and now - _mtime(repo, head) < LEASE_TTL
        if not alive:
            if lease not in live.leases:
                live.stale[lease] = keys
            continue
        live.leases.add(lease)
        live.stale.pop(lease, None)
        live.held.update(k.rsplit("/", 1)[-1] for k in keys if k != head)


def _mtime(repo: StoreRepository, key: str) -> float:
    """When `key` was written; for one gone since it was listed, the future (never old)."""
    try:
        return repo.store.mtime(key)
    except NotFound:
        return float("inf")


def _mark(repo: StoreRepository, live: _Live) -> None:
    """Every manifest any tag's history names, and its packs (new ones only, when again)."""
    for dataset in repo.list_datasets():
        for history in repo.list_tags(dataset).values():
            for signed in history.records:
                manifest_id: ManifestId = signed.record.manifest_id
                if manifest_id.hex() in live.manifests:
                    continue
                manifest = repo.get_manifest(dataset, manifest_id)
                live.packs.update(ref.pack.hex() for ref in manifest.iter_blocks() if ref.pack)
                live.manifests.add(manifest_id.hex())
