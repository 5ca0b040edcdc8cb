"""Publish a directory as a new version: chunk, seal, pack what the store lacks, upload, tag.

Chunks are sealed by a pool of threads (PyNaCl, BLAKE3, zstd and boto3 release the GIL), with
a bound on chunks in flight; new blocks are gathered into packs of PACK_TARGET bytes, each
written with one PUT, so memory stays flat however large the files are.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aetherfs.core.blocklist import BlockList, record_of
from aetherfs.core.blocks import DEFAULT_LEVEL, REBUILT_LEVEL, BlockRef, seal_block
from aetherfs.core.chunking import (
    DEFAULT_PARAMS,
    HEADER_BYTES,
    ChunkParams,
    choose_params,
    cut_stream,
)
from aetherfs.core.ids import DIGEST_SIZE, ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.core.names import check_dataset_name, check_tag, is_version_tag
from aetherfs.core.packs import PACK_TARGET, PackBuilder
from aetherfs.errors import Conflict, InvalidInput, LocalIOError, NotFound
from aetherfs.keys import ReaderKeyring
from aetherfs.ops.cutter import Cutter
from aetherfs.ops.located import LocatedBlocks
from aetherfs.ops.manifest_builder import ManifestBuilder
from aetherfs.ops.push_journal import JournalEntry, PushJournal
from aetherfs.ops.push_lease import CHECKS_AT_ONCE, PushLease
from aetherfs.ops.rebuilt import rebuilt_files
from aetherfs.ops.scan import LocalEntry, scan_directory
from aetherfs.repository import Repository

Progress = Callable[[int], None]
LATEST = "latest"
# Chunks handed to a sealing thread at once: one hand-off per chunk cost as much in wake-ups as
# the sealing (`python -m benchmarks.throughput`; figures in docs/benchmarks.md, "The tuned
# constants").
BATCH_BYTES = 1024 * 1024
# Below this, starting the cutter process (~0.1 s) costs more than it frees the GIL for.
CUT_ELSEWHERE_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class PushStats:
    files: int = 0
    bytes: int = 0
    blocks: int = 0
    unique_blocks: int = 0
    new_blocks: int = 0
    new_bytes: int = 0  # stored bytes uploaded in packs
    packs: int = 0
    resumed_packs: int = 0  # packs an interrupted try uploaded, used instead of uploading
    resumed_bytes: int = 0
    seconds: float = 0.0

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per byte uploaded: how much the store was spared."""
        return self.bytes / self.new_bytes if self.new_bytes else float("inf")


@dataclass(frozen=True, slots=True)
class PushResult:
    dataset: str
    manifest_id: ManifestId
    tags: tuple[str, ...]
    stats: PushStats


class _Packer:
    """Seals chunks and packs the blocks the store lacks; safe to call from many threads.

    A full pack goes to an uploader thread, so sealing goes on while it is written and
    fsynced (or PUT). Packs are built in a fixed set of reused buffers (one filling, the rest
    uploading): that bounds memory, and sealing waits for a free buffer when the store is the
    slower side.
    """

    def __init__(
        self,
        repo: Repository,
        dataset: str,
        located: LocatedBlocks,
        stats: PushStats,
        target: int,
        lease: PushLease,
        journal: PushJournal | None,
        max_uploads: int = 1,
    ) -> None:
        self.repo = repo
        self.dataset = dataset  # whose packs: through a hub, its ACL decides
        self.lease = lease
        self.journal = journal
        # Every block on the store (known before the push, or packed by it), kept on disk.
        self.located = located
        self.stats = stats
        self.target = target
        self._pending: set[bytes] = set()
        self._lock = threading.Lock()
        self._secret = repo.keyring.convergence_secret
        self._uploaders = ThreadPoolExecutor(max_uploads, thread_name_prefix="push-upload")
        self._uploads: list[Future[None]] = []
        # Buffers start empty and grow to a pack's size on first use: a push of a few files
        # never touches more memory than its data needs.
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(max_uploads):
            self._free.put(bytearray())
        self._builder: PackBuilder | None = PackBuilder(bytearray())
        self._refilled = threading.Condition(self._lock)

    def add(self, data: bytes | memoryview, level: int = DEFAULT_LEVEL) -> BlockRef:
        block = seal_block(data, self._secret, level)
        with self._lock:
            while self._builder is None:  # the last pack is full and no buffer is free yet
                self._refilled.wait()  # (lets the lock go: check for duplicates after)
            block_id = block.ref.id.digest
            if block_id in self.located or block_id in self._pending:
                return block.ref
            self._pending.add(block_id)
            builder = self._builder
            builder.add(block)
            if builder.size < self.target:
                return block.ref
            self._builder = None
        # Nothing blocks with the lock held: uploads take it to record their blocks.
        try:
            self._hand_off(builder)
        finally:
            buffer = self._free.get()  # waits while the store is the slower side
            with self._lock:
                self._builder = PackBuilder(buffer)
                self._refilled.notify_all()
        return block.ref

    def add_batch(self, data: bytes, lengths: list[int], level: int = DEFAULT_LEVEL) -> bytes:
        """Seal consecutive chunks of `lengths` bytes laid end to end in `data`, compressed at
        zstd `level` where that pays.

        Returns their id digests laid end to end: the located records are in `located`, and
        they are all a file's entry needs once every pack is written.
        """
        ids = bytearray()
        start = 0
        with memoryview(data) as view:
            for length in lengths:
                ids += self.add(view[start : start + length], level).id.digest
                start += length
        return bytes(ids)

    def records(self, ids: bytes) -> BlockList:
        """The located blocks of `ids` (as add_batch returns them), once `finish` is done."""
        return BlockList.from_records(self.located.records(ids))

    def finish(self) -> None:
        """Upload the last pack and wait for every upload; raise the first failure."""
        with self._lock:
            last, self._builder = self._builder, None
        if last is not None and len(last):
            self._hand_off(last)
        self._uploaders.shutdown(wait=True)
        for upload in self._uploads:
            upload.result()

    def abandon(self) -> None:
        self._uploaders.shutdown(wait=True, cancel_futures=True)

    def _hand_off(self, builder: PackBuilder) -> None:
        with self._lock:
            self._uploads.append(self._uploaders.submit(self._upload, builder))
            finished: list[Future[None]] = []
            running: list[Future[None]] = []
            for upload in self._uploads:
                (finished if upload.done() else running).append(upload)
            self._uploads = running
        for upload in finished:
            upload.result()  # a failed upload fails the push now, not at the end

    def _upload(self, builder: PackBuilder) -> None:
        try:
            pack_id, data, located = builder.seal_in_place()
            with data:  # released however this ends: the buffer is built on again
                self.lease.name([pack_id])  # before the PUT: see ops/push_lease.py
                if not self.repo.put_pack(self.dataset, pack_id, data):
                    self.lease.found_there(pack_id)
                size = len(data)
            records = [record_of(ref) for ref in located.values()]
            if self.journal is not None:
                self.journal.record(JournalEntry(pack_id, size, b"".join(records)))
            with self._lock:
                self.located.add(records)
                self._pending.difference_update(ref.id.digest for ref in located.values())
                self.stats.new_blocks += len(located)
                self.stats.new_bytes += size
                self.stats.packs += 1
        finally:
            self._free.put(builder.buffer)


def _resume(
    repo: Repository,
    dataset: str,
    journal: PushJournal,
    lease: PushLease,
    located: LocatedBlocks,
    stats: PushStats,
) -> None:
    """Take the packs an interrupted push left (those still on the store) as uploaded."""
    entries = journal.entries
    if not entries:
        return
    lease.name([entry.pack for entry in entries], at_risk=True)  # before they are checked
    with ThreadPoolExecutor(CHECKS_AT_ONCE) as pool:
        present = list(
            pool.map(lambda pack: repo.has_pack(dataset, pack), (e.pack for e in entries))
        )
    kept = [entry for entry, there in zip(entries, present, strict=True) if there]
    if len(kept) < len(entries):
        journal.keep_only(kept)  # gone (gc, a store reset): those blocks are uploaded again
        lease.not_needed(e.pack for e, there in zip(entries, present, strict=True) if not there)
    for entry in kept:
        located.add(entry.iter_records())
        stats.resumed_packs += 1
        stats.resumed_bytes += entry.size


def _copy_runs(stream: BinaryIO, params: ChunkParams) -> Iterator[tuple[bytes, list[int]]]:
    """Cut here: runs of consecutive chunks of about BATCH_BYTES, one copy each."""
    for _, span, lengths in cut_stream(stream, params):
        # The span is reused for the next window: copy out, once per run, not per chunk.
        start = end = first = 0
        for i, length in enumerate(lengths):
            end += length
            if end - start >= BATCH_BYTES or i == len(lengths) - 1:
                yield bytes(span[start:end]), lengths[first : i + 1]
                start, first = end, i + 1


def _read_runs(
    stream: BinaryIO, runs: Iterator[list[int]], name: str
) -> Iterator[tuple[bytes, list[int]]]:
    """Cut elsewhere: read runs of whole chunks of about BATCH_BYTES, as the cutter says."""
    batch: list[int] = []
    size = 0
    for lengths in runs:
        for length in lengths:
            batch.append(length)
            size += length
            if size >= BATCH_BYTES:
                yield _read_exactly(stream, size, name), batch
                batch, size = [], 0
    if batch:
        yield _read_exactly(stream, size, name), batch
    if stream.read(1):
        raise InvalidInput(f"{name} grew while it was being pushed; push again once it is still")


def _read_exactly(stream: BinaryIO, size: int, name: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise InvalidInput(f"{name} shrank while it was being pushed; push again once it is still")
    return data


def _open_entry(root: Path, path: str) -> BinaryIO:
    """A scanned file, opened to be read; one that cannot be is an error naming it."""
    try:
        return (root / path).open("rb")
    except OSError as exc:
        raise LocalIOError(
            f"cannot read {root / path}: {exc.strerror}; nothing was published (fix it and "
            "push again)"
        ) from None


def _latest_version(repo: Repository, dataset: str) -> tuple[ManifestId, Manifest] | None:
    """The version `latest` names, if any: a new version is stored as a delta on it when
    that is much smaller."""
    try:
        base_id = repo.resolve(dataset, LATEST).record.manifest_id
    except NotFound:
        return None
    return base_id, repo.get_manifest(dataset, base_id)


def _refuse_taken_version_tags(repo: Repository, dataset: str, tags: list[str]) -> None:
    """Fail before uploading anything if a version tag is already set (they never move)."""
    for tag in tags:
        if not is_version_tag(tag):
            continue
        try:
            current = repo.resolve(dataset, tag).record.manifest_id
        except NotFound:
            continue
        raise Conflict(
            f"{dataset}:{tag} already exists (manifest {current.short()}) and version tags are "
            "immutable; publish under a new version tag, or move a channel instead"
        )


def push_directory(
    repo: Repository,
    root: Path,
    dataset: str,
    tags: list[str],
    params: ChunkParams = DEFAULT_PARAMS,
    workers: int = 4,
    progress: Progress | None = None,
    meta: dict[str, str] | None = None,
    pack_target: int = PACK_TARGET,
    entries: list[LocalEntry] | None = None,
    cut_elsewhere: bool | None = None,
    journal_dir: Path | None = None,
) -> PushResult:
    """Publish `root` as a new version of `dataset` and point `tags` at it.

    `entries` is the result of `scan_directory(root)` if the caller already has it.
    `cut_elsewhere` runs FastCDC in a child process (`ops/cutter.py`); by default, for data
    of CUT_ELSEWHERE_BYTES or more, where that pays for starting it. `journal_dir` keeps the
    packs uploaded (`ops/push_journal.py`), so a retry of an interrupted push skips them.
    """
    started = time.monotonic()
    check_dataset_name(dataset)
    for tag in tags:
        check_tag(tag)
    if isinstance(repo.keyring, ReaderKeyring):
        repo.keyring.require_writer("push")  # before anything is written
    entries = scan_directory(root) if entries is None else entries
    _refuse_taken_version_tags(repo, dataset, tags)
    repo.ensure_dataset(dataset)
    stats = PushStats()
    key = repo.keyring.dataset_key(dataset)
    base = _latest_version(repo, dataset)
    rebuilt = rebuilt_files(root, (e.path for e in entries if e.kind == FILE), base and base[1])
    builder = ManifestBuilder(dataset, params, meta or {}, base)
    # The builder keeps the base's paths' fingerprints and its files' block lists (on disk
    # when the base is large: a spooled manifest), to patch against; the rest can go.
    del base
    lease = PushLease(repo.lease_store(), dataset)
    journal = None
    if journal_dir is not None:
        journal = PushJournal.open(journal_dir, repo.keyring.store_id, dataset)
    with (
        builder,
        LocatedBlocks() as located,
        tempfile.TemporaryFile(prefix="aetherfs-push-ids-") as id_spool,
        contextlib.closing(journal) if journal is not None else contextlib.nullcontext(),
    ):
        located.add(repo.known_blocks(dataset))
        if journal is not None:
            _resume(repo, dataset, journal, lease, located, stats)
        # One upload in flight while the next pack fills. A second (a third buffer) measured
        # 7% faster on the local store and 9% on SeaweedFS, for 17 and 34 MiB more peak RSS.
        packer = _Packer(repo, dataset, located, stats, pack_target, lease, journal)
        # Chunks go to the pool in batches of about BATCH_BYTES: one hand-off per small chunk
        # would cost as much thread wake-up as the sealing itself. The bound is on batches in
        # flight, whichever finish first, so one slow batch does not stall the others.
        slots = threading.BoundedSemaphore(workers * 2)
        failed: list[BaseException] = []
        # Each entry with its size and the bytes of its block ids in `id_spool`, where the
        # batches' ids go, in order, as they finish: memory grows with the files, not blocks.
        planned: list[_Planned] = []
        in_flight: collections.deque[tuple[_Planned, Future[bytes]]] = collections.deque()
        pool = ThreadPoolExecutor(workers, thread_name_prefix="push")

        def done(future: Future[bytes]) -> None:
            if not future.cancelled() and future.exception() is not None:
                failed.append(future.exception())  # type: ignore[arg-type]
            slots.release()

        def spool_ids(wait: bool) -> None:
            while in_flight and (wait or in_flight[0][1].done()):
                owner, future = in_flight.popleft()
                ids = future.result()
                id_spool.write(ids)
                owner.id_bytes += len(ids)

        def submit(owner: _Planned, data: bytes, lengths: list[int]) -> None:
            slots.acquire()
            if failed:
                slots.release()
                raise failed[0]
            # A file rebuilt from scratch shares nothing with the base: compress it harder.
            level = REBUILT_LEVEL if owner.path in rebuilt else DEFAULT_LEVEL
            future = pool.submit(packer.add_batch, data, lengths, level)
            if progress:
                progress(len(data))
            future.add_done_callback(done)
            in_flight.append((owner, future))
            owner.size += len(data)
            spool_ids(wait=False)

        if cut_elsewhere is None:
            cut_elsewhere = sum(e.size for e in entries) >= CUT_ELSEWHERE_BYTES
        cutter = None
        try:
            if cut_elsewhere:
                files = [e for e in entries if e.kind == FILE]
                cutter = Cutter(
                    [root / e.path for e in files],
                    params,
                    exact=frozenset(root / e.path for e in files if e.path in rebuilt),
                )
            for entry in entries:
                owner = _Planned(entry.path, entry.kind, entry.mode, entry.target)
                planned.append(owner)
                if entry.kind == FILE:
                    with _open_entry(root, entry.path) as stream:
                        if cutter is not None:
                            chosen, runs = cutter.next_file()
                            batches = _read_runs(stream, runs, entry.path)
                        else:
                            header = stream.read(HEADER_BYTES)
                            chosen = (
                                params
                                if entry.path in rebuilt
                                else choose_params(header, params, entry.size)
                            )
                            stream.seek(0)
                            batches = _copy_runs(stream, chosen)
                        owner.chunking = chosen if chosen != params else None
                        for data, lengths in batches:
                            submit(owner, data, lengths)
            pool.shutdown(wait=True)
            spool_ids(wait=True)
            packer.finish()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            packer.abandon()
            raise
        finally:
            if cutter is not None:
                cutter.close()

        id_spool.seek(0)
        for owner in planned:
            if owner.kind != FILE:
                builder.add(FileEntry(owner.path, owner.kind, owner.mode, target=owner.target))
                continue
            # Its zstd level, when not the default, so peers can seal its blocks again exactly.
            level = REBUILT_LEVEL if owner.path in rebuilt else None
            file = FileEntry(
                owner.path, FILE, owner.mode, owner.size, chunking=owner.chunking, level=level
            )
            located_runs = _located_runs(packer, located, id_spool, owner.id_bytes)
            builder.add_file(file, owner.id_bytes // DIGEST_SIZE, located_runs)
            stats.files += 1
            stats.bytes += owner.size
            stats.blocks += owner.id_bytes // DIGEST_SIZE
        stats.unique_blocks = located.used_count()
        planned.clear()
        # every pack the manifest names is on the store
        lease.confirm(lambda pack: repo.has_pack(dataset, pack))
        with tempfile.TemporaryFile(prefix="aetherfs-manifest-") as sealed:
            manifest_id = builder.seal(key, sealed.write)
            # New (its id covers its creation time): no gc listed it before it is named.
            lease.name([manifest_id])
            repo.put_sealed_manifest(dataset, manifest_id, sealed)
        for tag in tags:
            repo.set_tag(dataset, tag, manifest_id)
        if journal is not None:
            journal.finish()  # the tags name what it held now
    lease.release()
    stats.seconds = time.monotonic() - started
    return PushResult(dataset, manifest_id, tuple(tags), stats)


@dataclass(slots=True)
class _Planned:
    """An entry of the version being pushed, before its blocks are all located."""

    path: str
    kind: str
    mode: int
    target: str
    chunking: ChunkParams | None = None
    size: int = 0
    id_bytes: int = 0  # of its block ids, end to end in the id spool


_IDS_PER_RUN = 4096  # blocks looked up (and held) at a time: ~600 KB of records


def _located_runs(
    packer: _Packer, located: LocatedBlocks, id_spool: BinaryIO, id_bytes: int
) -> Iterator[BlockList]:
    """A file's located blocks, run by run, from its ids in `id_spool` (read from where it
    stands); each block is counted as used by the version."""
    while id_bytes:
        ids = id_spool.read(min(id_bytes, _IDS_PER_RUN * DIGEST_SIZE))
        if not ids:
            raise OSError("the push's id spool is shorter than what was written to it")
        id_bytes -= len(ids)
        located.note_used(ids)
        yield packer.records(ids)
