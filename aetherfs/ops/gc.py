"""Remove store objects nothing names: packs and manifests left by interrupted pushes.

Live means named by some record in some tag's history (history is kept, so every version a
tag ever named stays pullable). Objects younger than a grace period are spared, since a push
in progress uploads packs before it writes the manifest that names them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aetherfs.core.ids import ManifestId, PackId
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


def collect_garbage(
    repo: StoreRepository, grace_seconds: float = DEFAULT_GRACE, dry_run: bool = False
) -> GcResult:
    live_manifests: set[ManifestId] = set()
    live_packs: set[PackId] = set()
    for dataset in repo.list_datasets():
        for history in repo.list_tags(dataset).values():
            for signed in history.records:
                manifest_id = signed.record.manifest_id
                if manifest_id in live_manifests:
                    continue
                live_manifests.add(manifest_id)
                manifest = repo.get_manifest(dataset, manifest_id)
                live_packs.update(ref.pack for ref in manifest.iter_blocks() if ref.pack)
    cutoff = time.time() - grace_seconds
    removed_manifests, freed_m = _sweep(repo, layout.MANIFESTS, live_manifests, cutoff, dry_run)
    removed_packs, freed_p = _sweep(repo, layout.PACKS, live_packs, cutoff, dry_run)
    return GcResult(
        live_manifests=len(live_manifests),
        live_packs=len(live_packs),
        removed_manifests=removed_manifests,
        removed_packs=removed_packs,
        freed_bytes=freed_m + freed_p,
        dry_run=dry_run,
    )


def _sweep(
    repo: StoreRepository,
    prefix: str,
    live: set[ManifestId] | set[PackId],
    cutoff: float,
    dry_run: bool,
) -> tuple[tuple[str, ...], int]:
    """Delete objects under `prefix` whose id is not live and that are older than `cutoff`."""
    live_hex = {item.hex() for item in live}
    removed = []
    freed = 0
    for key in list(repo.store.list(prefix)):
        name = key.rsplit("/", 1)[-1]
        if name not in live_hex and repo.store.mtime(key) < cutoff:
            removed.append(name)
            freed += repo.store.size(key)
            if not dry_run:
                repo.store.delete(key)
    return tuple(removed), freed
