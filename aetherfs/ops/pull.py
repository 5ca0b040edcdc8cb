"""Materialise a version into a directory atomically.

The tree is built in a staging directory beside DIR and then swapped with DIR in one
renameat2(RENAME_EXCHANGE): a reader, or a crash, sees the old DIR or the new one. Blocks come
from bytes already in DIR or in the staging tree an interrupted pull left (`resume.py`), then
the cache if the caller gives one, then the store; a pull killed half-way thus resumes without
fetching again what it wrote.

One pull at a time holds DIR (`pull_lock.py`), from before it looks at DIR until after the
swap, so no other pull writes into its staging tree or records what it wrote. What it wrote is
recorded outside DIR (`pull_records.py`), so DIR holds exactly the dataset.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aetherfs.core.blocklist import as_block_list
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.errors import InvalidInput, LocalIOError, StoreUnavailable
from aetherfs.fetch.cache import BlockCache, CacheFull
from aetherfs.fetch.planner import BlockFetcher, SourceCounts
from aetherfs.fetch.sources import BlockSource
from aetherfs.ops.atomic import exchange, fsync_dir
from aetherfs.ops.materialise import LinkSource, build_tree
from aetherfs.ops.pull_lock import hold_target
from aetherfs.ops.pull_records import LEGACY_MARKER, PullRecords, TargetKey
from aetherfs.ops.resume import resume_chunks
from aetherfs.ops.reuse import (
    PulledFile,
    Stamp,
    TrustedFile,
    fingerprint,
    index_chunks,
    scan_pulled_directory,
)

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
    linked_files: int = 0  # unchanged files hard-linked from the previous tree, not rewritten
    linked_bytes: int = 0


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


def _normalised(target: Path) -> Path:
    """`target` absolute, `..` gone and its parent's symlinks resolved: one lock, one record,
    whichever way the same directory is named."""
    target = Path(os.path.abspath(target))
    if target.parent == target:
        raise InvalidInput(f"cannot pull into {target}: pull into a directory below it")
    return Path(os.path.realpath(target.parent)) / target.name


def _check_target(target: Path, force: bool, previous: dict[str, PulledFile] | None) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InvalidInput(f"{target} exists and is not a directory")
    if target.is_dir() and not force and previous is None and any(target.iterdir()):
        raise InvalidInput(
            f"{target} is not empty and was not made by `aetherfs pull`; its contents would be "
            "replaced. Pass --force to replace them."
        )


def _link_sources(manifest: Manifest, trusted: dict[str, TrustedFile]) -> dict[str, LinkSource]:
    """Files of the new version an old, still-vouched file holds exactly (bytes and mode).

    Each old file is linked at most once, preferably at its own path, so no two files of the
    new tree share an inode. Block lists are compared by fingerprint: 32 bytes per file held,
    not a copy of every list.
    """
    by_blocks: dict[tuple[bytes, int], list[TrustedFile]] = {}
    for item in trusted.values():
        if item.record.count and item.mode == item.record.mode:
            key = (item.record.fingerprint, item.mode)
            by_blocks.setdefault(key, []).append(item)
    used: set[str] = set()
    sources: dict[str, LinkSource] = {}
    if not by_blocks:
        return sources  # nothing vouched for (a first pull): no block lists to compare
    wanted = [
        (e, fingerprint(as_block_list(e.blocks).digests_and_sizes()))
        for e in manifest.files
        if e.kind == FILE and len(e.blocks)
    ]
    for same_path in (True, False):
        for entry, blocks_print in wanted:
            if entry.path in sources:
                continue
            for item in by_blocks.get((blocks_print, entry.mode), []):
                if item.record.path not in used and (
                    item.record.path == entry.path or not same_path
                ):
                    used.add(item.record.path)
                    sources[entry.path] = LinkSource(item.path, item.record.stamp, item.mode)
                    break
    return sources


def _settle_clock(probe: Path, newest_ns: int) -> int:
    """Wait (briefly) until a file written now gets an mtime later than `newest_ns`.

    File times have a coarse granularity: a file changed right after the pull, within the
    tick of its last write by the pull, would keep its recorded mtime and be trusted wrongly.
    Once the clock has moved past a recorded mtime, any later change shows (git's "racily
    clean" problem, solved at write time). Returns the mtime a file written now gets.
    """
    deadline = time.monotonic() + 0.5
    probe.touch()
    now_ns = probe.stat().st_mtime_ns
    while now_ns <= newest_ns and time.monotonic() < deadline:
        time.sleep(0.001)
        os.utime(probe)
        now_ns = probe.stat().st_mtime_ns
    return now_ns


def _record(
    manifest: Manifest,
    manifest_id: ManifestId,
    staging: Path,
    records: PullRecords,
    key: TargetKey,
    links: dict[str, LinkSource],
    linked: set[str],
) -> None:
    """Record each file written or linked, its stat and its blocks, for the tree `key` names.

    Written file by file: the whole record held at once would grow with the version.
    """
    stamps: list[tuple[FileEntry, Stamp, int]] = []
    for entry in manifest.files:
        if entry.kind != FILE:
            continue
        if entry.path in linked:
            # Its stat as vouched before linking: a change since then must show next time.
            source = links[entry.path]
            stamps.append((entry, source.stamp, source.mode))
        else:
            st = (staging / entry.path).lstat()
            stamps.append((entry, Stamp.of(st), stat.S_IMODE(st.st_mode)))
    written = [s.mtime_ns for e, s, _ in stamps if e.path not in linked]
    # The probe is on DIR's file system (whose clock and granularity count), and gone before
    # the swap: DIR holds the dataset and nothing else.
    fd, probe = tempfile.mkstemp(prefix=".aetherfs-clock-", dir=staging)
    os.close(fd)
    try:
        now_ns = _settle_clock(Path(probe), max(written, default=0))
    finally:
        os.unlink(probe)
    head = {"dataset": manifest.dataset, "manifest": manifest_id.hex(), "time": time.time()}
    with records.writer(key, head) as record:
        for entry, stamp, mode in stamps:
            # On a file system with very coarse times the wait can give up: files whose mtime
            # a change now would not move are left out, so the next pull reads and hashes them.
            if stamp.mtime_ns < now_ns:
                record.add(entry.path, stamp, mode, as_block_list(entry.blocks))
        record.finish()


def pull_manifest(
    manifest: Manifest,
    manifest_id: ManifestId,
    target: Path,
    sources: Sequence[BlockSource],
    cache: BlockCache | None,
    workers: int = 8,
    force: bool = False,
    progress: Progress | None = None,
    *,
    state_dir: Path,
    wait: bool = False,
    what: str = "",
    on_wait: Callable[[str], None] | None = None,
) -> PullResult:
    """Make `target` hold exactly `manifest`'s tree.

    `state_dir` keeps what this pull wrote (for the next pull over it); `what` names this pull
    to another one that finds `target` held (`wait`: wait for it, telling `on_wait`).
    """
    started = time.monotonic()
    target = _normalised(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with hold_target(target, what or f"{manifest.dataset} {manifest_id.short()}", wait, on_wait):
        return _pull_held(
            manifest,
            manifest_id,
            target,
            sources,
            cache,
            workers,
            force,
            progress,
            PullRecords(state_dir),
            started,
        )


def _pull_held(
    manifest: Manifest,
    manifest_id: ManifestId,
    target: Path,
    sources: Sequence[BlockSource],
    cache: BlockCache | None,
    workers: int,
    force: bool,
    progress: Progress | None,
    records: PullRecords,
    started: float,
) -> PullResult:
    previous = records.read(target)
    _check_target(target, force, previous)
    # Records of trees no longer there could only ever vouch for a stranger reusing an inode.
    records.prune(target, keep=TargetKey.of(target) if previous is not None else None)
    staging = staging_path(target)
    scan = scan_pulled_directory(target, previous or {}, skip=frozenset({LEGACY_MARKER}))
    del previous  # what is vouched for is in `scan`
    links = _link_sources(manifest, scan.trusted)
    # A staging tree left by an interrupted pull already holds the blocks it wrote, in place.
    resumed = resume_chunks(staging, manifest, skip=links.keys())
    # Bytes already in DIR are looked for only for files to be written, not linked: a set per
    # block of those (a linked file whose link fails later is fetched, from the cache or store).
    wanted = (
        {
            digest
            for e in manifest.files
            if e.kind == FILE and e.path not in links
            for digest, _ in as_block_list(e.blocks).digests_and_sizes()
        }
        if scan.trusted or scan.unvouched
        else set()
    )
    local = index_chunks(scan, manifest.chunking, wanted)
    del wanted
    for digest, chunk in resumed.items():
        local.chunks.setdefault(digest, chunk)
    del resumed
    fetcher = BlockFetcher(sources, cache, local.chunks)
    try:
        # A full cache disk makes room from other versions' blocks, never from this one's.
        with (
            cache.sparing(lambda: (ref.id for ref in manifest.iter_blocks()))
            if cache
            else (contextlib.nullcontext())
        ):
            linked = build_tree(
                manifest, staging, fetcher, workers=workers, progress=progress, links=links
            )
        staged = TargetKey.of(staging)
        assert staged is not None  # build_tree made it
        key = staged.moved_to(target)  # the swap moves the staging directory, inode and all
        _record(manifest, manifest_id, staging, records, key, links, linked)
    except BaseException as exc:
        # DIR is untouched. An interrupted pull (Ctrl-C, the store out of reach) leaves its
        # staging tree for the next one to resume from; any other failure gives the space back.
        if not isinstance(exc, (KeyboardInterrupt, StoreUnavailable)):
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise local_io_error(exc, target, manifest.total_size) from None
        raise
    if target.exists():
        exchange(staging, target)
        shutil.rmtree(staging)  # now the old tree (a marker left by earlier pulls with it)
    else:
        staging.rename(target)
    fsync_dir(target.parent)
    records.prune(target, keep=key)  # the old tree's record
    if cache is not None:
        with contextlib.suppress(CacheFull):  # DIR is done: a cache too full to tidy can wait
            cache.evict(pinned=(ref.id for ref in manifest.iter_blocks()))  # read only if over
    linked_entries = [e for e in manifest.files if e.path in linked]
    linked_bytes = sum(e.size for e in linked_entries)
    if linked_entries:
        fetcher.counts.add("linked", sum(len(e.blocks) for e in linked_entries), linked_bytes)
    return PullResult(
        dataset=manifest.dataset,
        manifest_id=manifest_id,
        target=target,
        files=sum(1 for e in manifest.files if e.kind == "f"),
        bytes=manifest.total_size,
        counts=fetcher.counts,
        seconds=time.monotonic() - started,
        linked_files=len(linked_entries),
        linked_bytes=linked_bytes,
    )
