"""Describe one version, and what a holder of version A pays to get version B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import FILE, Manifest


def describe(manifest: Manifest, manifest_id: ManifestId) -> dict[str, Any]:
    unique = manifest.unique_blocks()
    return {
        "dataset": manifest.dataset,
        "manifest": manifest_id.hex(),
        "created": manifest.created,
        "chunking": manifest.chunking.as_list(),
        "files": [
            {
                "path": e.path,
                "kind": {"f": "file", "l": "symlink", "d": "directory"}[e.kind],
                "mode": f"{e.mode:o}",
                "size": e.size,
                "blocks": len(e.blocks),
                **({"target": e.target} if e.target else {}),
                **({"chunking": e.chunking.as_list()} if e.chunking else {}),
            }
            for e in manifest.files
        ],
        "total_files": sum(1 for e in manifest.files if e.kind == FILE),
        "total_bytes": manifest.total_size,
        "blocks": sum(len(e.blocks) for e in manifest.files),
        "unique_blocks": len(unique),
        "stored_bytes": manifest.stored_size(),
    }


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    change: str  # added, removed, changed
    old_size: int
    new_size: int
    new_bytes: int  # stored bytes of blocks B has that A lacks, for this file


def diff(a: Manifest, b: Manifest) -> dict[str, Any]:
    """Files added, removed and changed from A to B, and the bytes B costs a holder of A."""
    old = {e.path: e for e in a.files}
    new = {e.path: e for e in b.files}
    held = set(a.unique_blocks())
    changes: list[FileChange] = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if after is None and before is not None:
            changes.append(FileChange(path, "removed", before.size, 0, 0))
            continue
        assert after is not None
        fresh = {r.id: r.stored_size for r in after.blocks if r.id not in held}
        if before is None:
            changes.append(FileChange(path, "added", 0, after.size, sum(fresh.values())))
        elif (before.kind, before.block_ids, before.mode, before.target) != (
            after.kind,
            after.block_ids,
            after.mode,
            after.target,
        ):
            changes.append(
                FileChange(path, "changed", before.size, after.size, sum(fresh.values()))
            )
    cost = b.stored_size(exclude=held)
    return {
        "dataset": b.dataset,
        "changes": [
            {
                "path": c.path,
                "change": c.change,
                "old_size": c.old_size,
                "new_size": c.new_size,
                "new_bytes": c.new_bytes,
            }
            for c in changes
        ],
        "blocks_to_fetch": len(set(b.unique_blocks()) - held),
        "bytes_to_fetch": cost,
        "total_stored_bytes": b.stored_size(),
        "saving": 1 - cost / b.stored_size() if b.stored_size() else 0.0,
    }
