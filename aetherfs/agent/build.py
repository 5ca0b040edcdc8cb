"""Build one version under DATA_ROOT/.versions (blocking; the daemon runs it in a thread).

Files whose content and mode equal a file of a version already here are hard-linked from it,
once checked to be still as written; the rest are written read-only by `build_tree` from
blocks fetched through the agent's sources. Nothing is visible under the version's final name
until the whole tree is written and fsynced. `restore_version` checks a retained version (and
puts it right) before it is made live again.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from aetherfs.agent.dataroot import DataRoot, DataRootLost, VersionInfo, Written, remove_tree
from aetherfs.agent.state import AgentState, Progress
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.errors import AetherError, DiskFull
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.metered import RateLimit, fetch_sources
from aetherfs.fetch.planner import BlockFetcher, LocalChunks
from aetherfs.ops.atomic import fsync_dir
from aetherfs.ops.materialise import (
    LinkSource,
    build_tree,
    file_mode,
    holds_entry,
    link_vouched,
    replace_file,
)
from aetherfs.ops.reuse import Stamp
from aetherfs.repository import Repository


def fingerprint(entry: FileEntry) -> str:
    """Same fingerprint, same bytes and mode: such files can share one inode."""
    h = blake3.blake3(f"{entry.mode:o}:{entry.size}:".encode())
    for ref in entry.blocks:
        h.update(ref.digest)
    return str(h.hexdigest())


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file of a version already here, with the fingerprint a new file needs."""

    path: Path
    written: Written | None  # its stat as written; None in a record older than that


def linkable_files(dataroot: DataRoot) -> dict[str, list[Candidate]]:
    """fingerprint -> files with those bytes and mode, from the versions already here."""
    found: dict[str, list[Candidate]] = {}
    for info in dataroot.all_versions():
        base = dataroot.version_dir(info.manifest_id)
        for print_, rel in info.fingerprints.items():
            found.setdefault(print_, []).append(Candidate(base / rel, info.written.get(rel)))
    return found


def vouched_source(entry: FileEntry, candidates: list[Candidate]) -> LinkSource | None:
    """A candidate still as written (or re-hashed to `entry`'s bytes), read-only: a file that
    can be hard-linked into the new version. None: write the file from blocks instead."""
    mode = file_mode(entry, read_only=True)
    for candidate in candidates:
        if candidate.written is not None and candidate.written.mode != mode:
            continue
        if candidate.written is not None and candidate.written.matches(candidate.path):
            return LinkSource(candidate.path, candidate.written.stamp, mode)
        # Changed since written (or never recorded): only its bytes can say.
        try:
            st = candidate.path.lstat()
            # A file an older agent left with its write bits loses them here, once.
            if stat.S_IMODE(st.st_mode) & ~0o222 != mode or not holds_entry(candidate.path, entry):
                continue
            if stat.S_IMODE(st.st_mode) != mode:
                os.chmod(candidate.path, mode)
        except OSError:
            continue
        return LinkSource(candidate.path, Stamp.of(st), mode)
    return None


def is_disk_full(exc: BaseException | None) -> bool:
    """A full disk, said by the OS or by SQLite, here or in what this error replaced.

    The block cache reports its faults as another error raised `from None`; the OSError (or
    SQLite's SQLITE_FULL) it replaced is still its `__context__`.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


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
    log: Callable[..., Any] = lambda *_, **__: None,
    count: Callable[[str, int], None] | None = None,
    local: LocalChunks | None = None,
) -> tuple[Path, VersionInfo]:
    """Write the version into its staging directory; returns it and its record. `count`
    replaces `state.count_fetch` (after a swarm fetch, cache reads are not counted again).
    `local`: plaintext the versions on disk hold (`TreeBlocks`), read before any source:
    once a version is live its blocks leave the cache, and its tree is where they are."""
    staging = dataroot.staging_dir(manifest_id)
    if staging.exists():
        remove_tree(staging)
    reusable = linkable_files(dataroot)
    to_link: list[tuple[FileEntry, LinkSource]] = []
    to_write: list[FileEntry] = []
    prints: dict[str, str] = {}
    refused = 0
    for entry in manifest.files:
        if entry.kind != FILE:
            to_write.append(entry)
            continue
        print_ = fingerprint(entry)
        prints.setdefault(print_, entry.path)
        candidates = reusable.get(print_, [])
        source = vouched_source(entry, candidates) if candidates else None
        if source is not None:
            to_link.append((entry, source))
        else:
            refused += bool(candidates)
            to_write.append(entry)
    if refused:
        log(
            "version.link_refused",
            manifest=manifest_id.hex(),
            files=refused,
            why="changed since they were written: written afresh from blocks",
        )
    partial = dataclasses.replace(manifest, files=tuple(to_write))
    progress.files_total = sum(1 for e in manifest.files if e.kind == FILE)
    progress.files_linked = len(to_link)
    progress.bytes_total = sum(e.size for e in to_write if e.kind == FILE)
    progress.blocks_total, progress.blocks_missing = _block_counts(partial, cache)

    on_fetch = count or state.count_fetch
    sources = fetch_sources(cache, repo, manifest.dataset, on_fetch, stop, store_limit)
    fetcher = BlockFetcher(sources, cache, local)
    try:
        build_tree(
            partial,
            staging,
            fetcher,
            workers=workers,
            progress=lambda n: state.add_progress(progress, n),
            read_only=True,
        )
        if fetcher.counts.blocks.get("local"):  # plaintext the trees on disk held
            state.count_fetch(
                "local", fetcher.counts.bytes["local"], fetcher.counts.blocks["local"]
            )
        parents = set()
        for entry, source in to_link:
            path = staging / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            if not link_vouched(source, path):  # changed since it was checked
                replace_file(entry, path, fetcher, source.mode)
            parents.add(path.parent)
        for parent in parents:
            fsync_dir(parent)
        written = {
            e.path: Written.of((staging / e.path).lstat()) for e in manifest.files if e.kind == FILE
        }
    except BaseException as exc:
        remove_tree(staging)
        if is_disk_full(exc):
            raise DiskFull(
                f"no space left under {dataroot.root} (or the cache {cache.root}) while "
                f"building {manifest.dataset} {manifest_id.short()}: free space or lower "
                "cache_limit; the live version is untouched"
            ) from None
        why = dataroot.lost() if isinstance(exc, Exception) else None
        if why is not None:
            raise DataRootLost.because(dataroot.root, why) from None
        raise
    info = VersionInfo(
        manifest_id=manifest_id,
        dataset=manifest.dataset,
        built=time.time(),
        blocks=b"".join({ref.id.digest for ref in manifest.iter_blocks()}),
        files=progress.files_total,
        size=manifest.total_size,
        fingerprints=prints,
        written=written,
    )
    return staging, info


@dataclass(frozen=True, slots=True)
class Restored:
    """What checking a retained version found before it went live again."""

    checked: int  # files whose stat was compared with what was written
    rehashed: tuple[str, ...]  # stat changed, bytes right (mode or record put right)
    repaired: tuple[str, ...]  # bytes wrong or file gone: written afresh from blocks


def restore_version(
    repo: Repository,
    cache: BlockCache,
    dataroot: DataRoot,
    state: AgentState,
    manifest_id: ManifestId,
    stop: threading.Event,
    store_limit: RateLimit | None,
    local: LocalChunks | None = None,
) -> Restored:
    """Check a retained version before it is made live again, and put right what differs.

    Root ignores the read-only modes, and a file shared by hard links with the version that
    was live may have been written through it. Every file's stat is compared with what was
    written; one that differs is re-hashed against the manifest and, if its bytes are not the
    version's, written afresh (a new inode) from the cache or the store. The manifest is only
    read when something differs.
    """
    info = dataroot.version_info(manifest_id)
    if info is None:
        raise AetherError(f"version {manifest_id.short()} vanished; rebuilding")
    base = dataroot.version_dir(manifest_id)
    changed = info.changed(base)
    if len(info.written) == info.files and not changed:
        return Restored(info.files, (), ())
    manifest = repo.get_manifest(info.dataset, manifest_id)
    sources = fetch_sources(cache, repo, manifest.dataset, state.count_fetch, stop, store_limit)
    fetcher = BlockFetcher(sources, cache, local)  # a tree's bytes are re-hashed when read
    written = dict(info.written)
    rehashed: list[str] = []
    repaired: list[str] = []
    for entry in manifest.files:
        if entry.kind != FILE:
            continue
        path = base / entry.path
        recorded = written.get(entry.path)
        if recorded is not None and recorded.matches(path):
            continue
        mode = file_mode(entry, read_only=True)
        if holds_entry(path, entry):
            if stat.S_IMODE(path.lstat().st_mode) != mode:
                os.chmod(path, mode)
            rehashed.append(entry.path)
        else:
            replace_file(entry, path, fetcher, mode)
            repaired.append(entry.path)
        written[entry.path] = Written.of(path.lstat())
    dataroot.save_record(dataclasses.replace(info, written=written))
    return Restored(len(written), tuple(rehashed), tuple(repaired))


def _block_counts(manifest: Manifest, cache: BlockCache) -> tuple[int, int]:
    """Unique blocks of `manifest`, and how many of them the cache lacks (ids held briefly)."""
    wanted = {ref.id for ref in manifest.iter_blocks()}
    return len(wanted), len(wanted) - len(cache.has(wanted))
