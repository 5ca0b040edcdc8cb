"""Build one version under DATA_ROOT/.versions (blocking; the daemon runs it in a thread).

Files whose content and mode equal a file of a version already here are hard-linked from it;
the rest are written by `build_tree` from blocks fetched through the agent's sources. Nothing
is visible under the version's final name until the whole tree is written and fsynced.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import threading
import time
from pathlib import Path

import blake3

from aetherfs.agent.dataroot import DataRoot, VersionInfo, remove_tree
from aetherfs.agent.sources import RateLimit, fetch_sources
from aetherfs.agent.state import AgentState, Progress
from aetherfs.cache import BlockCache
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.errors import AetherError
from aetherfs.fetch.planner import BlockFetcher
from aetherfs.ops.atomic import fsync_dir
from aetherfs.ops.materialise import build_tree
from aetherfs.repository import Repository


class DiskFull(AetherError):
    """The data root or the cache ran out of space."""


def fingerprint(entry: FileEntry) -> str:
    """Same fingerprint, same bytes and mode: such files can share one inode."""
    h = blake3.blake3(f"{entry.mode:o}:{entry.size}:".encode())
    for ref in entry.blocks:
        h.update(ref.digest)
    return str(h.hexdigest())


def linkable_files(dataroot: DataRoot) -> dict[str, Path]:
    """fingerprint -> an existing file with those bytes, from the versions already here."""
    found: dict[str, Path] = {}
    for info in dataroot.all_versions():
        base = dataroot.version_dir(info.manifest_id)
        for print_, rel in info.fingerprints.items():
            found.setdefault(print_, base / rel)
    return found


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def build_version(
    repo: Repository,
    cache: BlockCache,
    dataroot: DataRoot,
    state: AgentState,
    manifest: Manifest,
    manifest_id: ManifestId,
    progress: Progress,
    workers: int,
    stop: threading.Event,
    store_limit: RateLimit | None,
) -> tuple[Path, VersionInfo]:
    """Write the version into its staging directory; returns it and its record."""
    staging = dataroot.staging_dir(manifest_id)
    if staging.exists():
        remove_tree(staging)
    reusable = linkable_files(dataroot)
    to_link: list[tuple[FileEntry, Path]] = []
    to_write: list[FileEntry] = []
    prints: dict[str, str] = {}
    for entry in manifest.files:
        if entry.kind != FILE:
            to_write.append(entry)
            continue
        print_ = fingerprint(entry)
        prints.setdefault(print_, entry.path)
        source = reusable.get(print_)
        if source is not None and _same_size(source, entry.size):
            to_link.append((entry, source))
        else:
            to_write.append(entry)
    partial = dataclasses.replace(manifest, files=tuple(to_write))
    progress.files_total = sum(1 for e in manifest.files if e.kind == FILE)
    progress.files_linked = len(to_link)
    progress.bytes_total = sum(e.size for e in to_write if e.kind == FILE)
    progress.blocks_total, progress.blocks_missing = _block_counts(partial, cache)

    sources = fetch_sources(cache, repo, manifest.dataset, state.count_fetch, stop, store_limit)
    fetcher = BlockFetcher(sources, cache)
    try:
        build_tree(
            partial,
            staging,
            fetcher,
            workers=workers,
            progress=lambda n: state.add_progress(progress, n),
        )
        parents = set()
        for entry, source in to_link:
            path = staging / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, path)
            parents.add(path.parent)
        for parent in parents:
            fsync_dir(parent)
    except BaseException as exc:
        remove_tree(staging)
        if is_disk_full(exc):
            raise DiskFull(
                f"no space left under {dataroot.root} (or the cache {cache.root}) while "
                f"building {manifest.dataset} {manifest_id.short()}: free space or lower "
                "cache_limit; the live version is untouched"
            ) from None
        raise
    info = VersionInfo(
        manifest_id=manifest_id,
        dataset=manifest.dataset,
        built=time.time(),
        blocks=b"".join({ref.id.digest for ref in manifest.iter_blocks()}),
        files=progress.files_total,
        size=manifest.total_size,
        fingerprints=prints,
    )
    return staging, info


def _block_counts(manifest: Manifest, cache: BlockCache) -> tuple[int, int]:
    """Unique blocks of `manifest`, and how many of them the cache lacks (ids held briefly)."""
    wanted = {ref.id for ref in manifest.iter_blocks()}
    return len(wanted), len(wanted) - len(cache.has(wanted))


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False
