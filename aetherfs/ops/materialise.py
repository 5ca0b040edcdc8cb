"""Write one version's tree into an empty directory, many blocks at once, memory bounded.

Files the caller knows to exist already with exactly the right bytes and mode are hard-linked
instead of written; they are never opened for writing here.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3

from aetherfs.core.blocks import BlockRef
from aetherfs.core.manifest import DIRECTORY, FILE, SYMLINK, FileEntry, Manifest
from aetherfs.core.packs import plan_reads
from aetherfs.fetch.planner import BlockFetcher
from aetherfs.ops.atomic import fsync_dir
from aetherfs.ops.reuse import Stamp

Progress = Callable[[int], None]
# Chosen with `python -m benchmarks.throughput` (pull); the figures are in docs/benchmarks.md,
# "The tuned constants".
# Bytes of blocks one worker fetches, opens and writes at a time (one ranged GET from a pack).
# Small batches keep every worker busy and memory low; large ones cost the S3 server less per
# byte.
BATCH_BYTES = 3 * 1024 * 1024
# Of files planned at once (see _batches); a window may end inside a file, so one large file
# does not make the plan grow with it (its peak RSS at --huge-mib).
WINDOW_BYTES = 256 * 1024 * 1024
# More threads only contend for the GIL.
DEFAULT_WORKERS = min(8, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class LinkSource:
    """An existing file vouched to hold exactly an entry's bytes and mode while its stat holds."""

    path: Path
    stamp: Stamp
    mode: int


def _still_vouched(path: Path, source: LinkSource) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and Stamp.of(st) == source.stamp
        and stat.S_IMODE(st.st_mode) == source.mode
    )


def link_vouched(source: LinkSource, path: Path) -> bool:
    """Hard-link `source` at `path`; False (and nothing at `path`) if that cannot be done."""
    try:
        os.link(source.path, path, follow_symlinks=False)
    except OSError:
        return False  # e.g. another device: the file is written from blocks instead
    if _still_vouched(path, source):
        return True
    path.unlink()
    return False


def file_mode(entry: FileEntry, read_only: bool) -> int:
    """The mode a file of `entry` is given: the manifest's, less its write bits if read-only."""
    return entry.mode & ~0o222 if read_only else entry.mode


def holds_entry(path: Path, entry: FileEntry) -> bool:
    """Whether the regular file at `path` holds exactly `entry`'s bytes (re-hashed, block by
    block, against the manifest's plaintext digests)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size != entry.size:
            return False
        offset = 0
        for ref in entry.blocks:
            data = os.pread(fd, ref.size, offset)
            if len(data) != ref.size or blake3.blake3(data).digest() != ref.digest:
                return False
            offset += ref.size
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def replace_file(entry: FileEntry, path: Path, fetcher: BlockFetcher, mode: int) -> None:
    """Write `entry` afresh beside `path` and rename it over `path`: a new inode, so a copy
    that shared the old one by a hard link is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.aetherfs-repair")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with tmp.open("wb") as f:
            for ref in entry.blocks:
                f.write(fetcher.plaintext(ref))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _write_file(entry: FileEntry, path: Path, fetcher: BlockFetcher) -> None:
    path.unlink()
    with path.open("wb") as f:
        for ref in entry.blocks:
            f.write(fetcher.plaintext(ref))


_SYNC_THREADS = 2  # files flushed at once, beside the fetch workers


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# At most this many buffers per pwritev (Linux's IOV_MAX is 1024).
_IOV_MAX = 512


Buffer = bytes | memoryview


def _write_run(opened: dict[str, int], root: Path, rel: str, start: int, run: list[Buffer]) -> None:
    """Write `run`'s buffers end to end from `start` in the file `rel` (opened once)."""
    fd = opened.get(rel)
    if fd is None:
        fd = opened[rel] = os.open(root / rel, os.O_WRONLY)
    for first in range(0, len(run), _IOV_MAX):
        part = run[first : first + _IOV_MAX]
        size = sum(len(b) for b in part)
        done = os.pwritev(fd, part, start)
        while done < size:  # a short write: the rest, one buffer at a time
            flat = b"".join(part)
            done += os.pwrite(fd, flat[done:], start + done)
        start += size


Spots = list[tuple[str, int]]  # (path, offset) where one block's plaintext goes
Batch = tuple[tuple[BlockRef, Spots], ...]


def _batches(files: list[FileEntry]) -> Iterator[Batch]:
    """Batches of blocks in store order, planned one window of blocks at a time.

    Planning the whole version at once would hold a placement for every block until the end;
    a window of WINDOW_BYTES keeps that bounded however large the version, or one file of it
    (a window may end in the middle of a file). A block that occurs in two windows is
    fetched twice, the second time from the cache.
    """
    # Keyed by the id's digest: bytes hash in C (and keep their hash), a BlockId in Python.
    places: dict[bytes, tuple[BlockRef, Spots]] = {}
    size = 0
    for entry in files:
        path = entry.path
        offset = 0
        for ref in entry.blocks:
            place = places.get(ref.id.digest)
            if place is None:
                places[ref.id.digest] = (ref, [(path, offset)])
            else:  # the same block again (in this file or another)
                place[1].append((path, offset))
            offset += ref.size
            size += ref.size
            if size >= WINDOW_BYTES:
                yield from _planned(places)
                places, size = {}, 0
    yield from _planned(places)


def _planned(places: dict[bytes, tuple[BlockRef, Spots]]) -> Iterator[Batch]:
    refs = (ref for ref, _ in places.values())
    for read in plan_reads(refs, max_range=BATCH_BYTES):
        yield tuple(places[ref.id.digest] for ref in read.blocks)


def build_tree(
    manifest: Manifest,
    target: Path,
    fetcher: BlockFetcher,
    workers: int = 8,
    progress: Progress | None = None,
    links: Mapping[str, LinkSource] | None = None,
    read_only: bool = False,
) -> set[str]:
    """Create every directory, file and symlink of `manifest` under the empty `target`.

    A file named in `links` is hard-linked from its source when possible (and then neither
    written, chmod-ed nor fsync-ed: the source already has the mode and is durable). With
    `read_only`, files written get their mode without write bits (`file_mode`): the agent
    shares them between versions. Returns the paths linked.
    """
    links = links or {}
    linked: set[str] = set()
    target.mkdir(parents=True, exist_ok=True)
    for entry in manifest.files:
        if entry.kind == DIRECTORY:
            (target / entry.path).mkdir(parents=True, exist_ok=True)
    for entry in manifest.files:
        if entry.kind == FILE:
            path = target / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            source = links.get(entry.path)
            if source is not None and link_vouched(source, path):
                linked.add(entry.path)
                if progress:
                    progress(entry.size)
                continue
            # Not truncated to zero: a file kept from an interrupted pull (`resume.py`) holds
            # blocks at their places, read back (and re-hashed) as local chunks.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, entry.size)
            finally:
                os.close(fd)

    to_write = [e for e in manifest.files if e.kind == FILE and e.path not in linked]
    remaining = {e.path: e.size for e in to_write}  # bytes still to write, per file
    synced: set[str] = set()
    lock = threading.Lock()

    def place(batch: Batch) -> None:
        plaintexts = fetcher.plaintexts([ref for ref, _ in batch])
        # A batch is a run of one pack, mostly consecutive blocks of a few files: open each
        # file once per batch, not once per block, and write each run of blocks that follow
        # one another in a file with one pwritev.
        opened: dict[str, int] = {}
        written: dict[str, int] = {}
        runs: dict[str, tuple[int, list[Buffer]]] = {}  # per file: where its run starts, buffers
        ends: dict[str, int] = {}
        try:
            for ref, spots in batch:
                data = plaintexts[ref.id]
                for rel, offset in spots:
                    if ends.get(rel) != offset:
                        if rel in runs:
                            _write_run(opened, target, rel, *runs[rel])
                        runs[rel] = (offset, [])
                    runs[rel][1].append(data)
                    ends[rel] = offset + len(data)
                    written[rel] = written.get(rel, 0) + len(data)
            for rel, (start, buffers) in runs.items():
                _write_run(opened, target, rel, start, buffers)
            if progress:
                progress(sum(written.values()))
            # fsync each file as soon as it is whole, on threads of their own: a fetch worker
            # waiting for the disk fetched nothing meanwhile (the flush of every file was most
            # of the wall time between a fresh pull and s5cmd, which does not fsync).
            for rel, size in written.items():
                with lock:
                    remaining[rel] -= size
                    if remaining[rel] == 0:
                        synced.add(rel)
                        syncs.append(syncer.submit(_fsync_path, target / rel))
        finally:
            for fd in opened.values():
                os.close(fd)

    # Batches follow the store's packs, so a batch the store serves is one ranged GET.
    in_flight: deque[Future[None]] = deque()
    syncs: list[Future[None]] = []
    with (
        ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="fsync") as syncer,
        ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool,
    ):
        try:
            for batch in _batches(to_write):
                while len(in_flight) >= workers + 2:
                    in_flight.popleft().result()
                in_flight.append(pool.submit(place, batch))
            while in_flight:
                in_flight.popleft().result()
        except BaseException:
            for future in [*in_flight, *syncs]:
                future.cancel()
            raise
    for sync in syncs:
        sync.result()  # an fsync that failed fails the build

    # A linked file shares its inode with the old tree until the swap: if someone changed it
    # there meanwhile, it no longer holds the version's bytes, so write it afresh.
    for entry in manifest.files:
        if entry.path in linked and not _still_vouched(target / entry.path, links[entry.path]):
            linked.discard(entry.path)
            _write_file(entry, target / entry.path, fetcher)

    for entry in manifest.files:
        path = target / entry.path
        if entry.kind == SYMLINK:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.target, path)
        elif entry.kind == FILE and entry.path not in linked:
            if entry.path not in synced:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.chmod(path, file_mode(entry, read_only))
    # Directory modes last: a read-only directory must be filled before it is closed.
    for entry in sorted(manifest.files, key=lambda e: e.path, reverse=True):
        if entry.kind == DIRECTORY:
            os.chmod(target / entry.path, entry.mode | 0o700)
            fsync_dir(target / entry.path)
    fsync_dir(target)
    return linked
