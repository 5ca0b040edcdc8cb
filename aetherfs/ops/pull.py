"""Materialise a version into a directory atomically.

The tree is built in a staging directory beside DIR and then swapped with DIR in one
renameat2(RENAME_EXCHANGE): a reader, or a crash, sees the old DIR or the new one. Blocks come
from bytes already in DIR, then the cache, then the store; fetched blocks land in the cache
first, so a pull killed half-way resumes without fetching them again.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aetherfs.cache import BlockCache
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import Manifest
from aetherfs.errors import InvalidInput, LocalIOError
from aetherfs.fetch.planner import BlockFetcher, SourceCounts
from aetherfs.fetch.sources import BlockSource
from aetherfs.ops.atomic import exchange, fsync_dir
from aetherfs.ops.materialise import build_tree
from aetherfs.ops.reuse import index_directory
from aetherfs.ops.scan import PULL_MARKER as MARKER

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PullResult:
    dataset: str
    manifest_id: ManifestId
    target: Path
    files: int
    bytes: int
    counts: SourceCounts
    seconds: float


def local_io_error(exc: OSError, target: Path, needed: int) -> LocalIOError:
    if exc.errno == errno.ENOSPC:
        return LocalIOError(
            f"no space left on the device of {target} (this version needs {needed} bytes); "
            f"{target} is unchanged. Free some space and pull again."
        )
    return LocalIOError(
        f"cannot write {exc.filename or target}: {exc.strerror}; {target} is unchanged"
    )


def staging_path(target: Path) -> Path:
    return target.parent / f".{target.name}.aetherfs-staging"


def _check_target(target: Path, force: bool) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InvalidInput(f"{target} exists and is not a directory")
    if target.is_dir() and not force and not (target / MARKER).exists() and any(target.iterdir()):
        raise InvalidInput(
            f"{target} is not empty and was not made by `aetherfs pull`; its contents would be "
            "replaced. Pass --force to replace them."
        )


def pull_manifest(
    manifest: Manifest,
    manifest_id: ManifestId,
    target: Path,
    sources: Sequence[BlockSource],
    cache: BlockCache | None,
    workers: int = 8,
    force: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    started = time.monotonic()
    target = target.absolute()
    _check_target(target, force)
    staging = staging_path(target)
    if staging.exists() or staging.is_symlink():
        shutil.rmtree(staging)  # left by an interrupted pull; its blocks are in the cache
    wanted = {ref.digest for ref in manifest.iter_blocks()}
    local = index_directory(target, manifest.chunking, wanted, skip=frozenset({MARKER}))
    fetcher = BlockFetcher(sources, cache, local)
    try:
        build_tree(manifest, staging, fetcher, workers=workers, progress=progress)
        marker = {"dataset": manifest.dataset, "manifest": manifest_id.hex(), "time": time.time()}
        (staging / MARKER).write_text(json.dumps(marker) + "\n")
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)  # give the space back; DIR is untouched
        if isinstance(exc, OSError):
            raise local_io_error(exc, target, manifest.total_size) from None
        raise
    if target.exists():
        exchange(staging, target)
        shutil.rmtree(staging)  # now the old tree
    else:
        staging.rename(target)
    fsync_dir(target.parent)
    if cache is not None:
        cache.evict(pinned=manifest.unique_blocks())
    return PullResult(
        dataset=manifest.dataset,
        manifest_id=manifest_id,
        target=target,
        files=sum(1 for e in manifest.files if e.kind == "f"),
        bytes=manifest.total_size,
        counts=fetcher.counts,
        seconds=time.monotonic() - started,
    )
