"""Publish a directory as a new version: chunk, seal, upload what the store lacks, tag.

Chunks are sealed and uploaded by a pool of threads (PyNaCl, BLAKE3, zstd and boto3 release
the GIL), with a bound on chunks in flight so memory stays flat however large the files are.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aetherfs.core.blocks import BlockRef, seal_block
from aetherfs.core.chunking import DEFAULT_PARAMS, ChunkParams, chunk_stream
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.core.names import check_dataset_name, check_tag, is_version_tag
from aetherfs.errors import Conflict, NotFound
from aetherfs.ops.scan import scan_directory
from aetherfs.repo import Repository

Progress = Callable[[int], None]


@dataclass(slots=True)
class PushStats:
    files: int = 0
    bytes: int = 0
    blocks: int = 0
    unique_blocks: int = 0
    new_blocks: int = 0
    new_bytes: int = 0  # stored bytes uploaded
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


@dataclass(slots=True)
class _Uploader:
    repo: Repository
    known: set[BlockId]
    stats: PushStats
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seal_and_upload(self, data: bytes) -> BlockRef:
        block = seal_block(data, self.repo.keyring.convergence_secret)
        block_id = block.ref.id
        with self.lock:
            fresh = block_id not in self.known
            self.known.add(block_id)
        # A HEAD costs less than a PUT and uploads nothing: check before sending.
        if fresh and not self.repo.has_block(block_id) and self.repo.put_block(block):
            with self.lock:
                self.stats.new_blocks += 1
                self.stats.new_bytes += len(block.stored)
        return block.ref


def known_blocks(repo: Repository, dataset: str, tag: str = "latest") -> set[BlockId]:
    """Blocks of the current `latest`: certainly in the store, so no need to ask."""
    try:
        signed = repo.resolve(dataset, tag)
        return set(repo.get_manifest(dataset, signed.record.manifest_id).unique_blocks())
    except NotFound:
        return set()


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
) -> PushResult:
    started = time.monotonic()
    check_dataset_name(dataset)
    for tag in tags:
        check_tag(tag)
    entries = scan_directory(root)
    _refuse_taken_version_tags(repo, dataset, tags)
    repo.ensure_dataset(dataset)
    stats = PushStats()
    uploader = _Uploader(repo, known_blocks(repo, dataset), stats)
    max_in_flight = workers * 2
    in_flight: deque[Future[BlockRef]] = deque()
    planned: list[tuple[FileEntry, list[Future[BlockRef]]]] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="push") as pool:
        for entry in entries:
            futures: list[Future[BlockRef]] = []
            planned.append(
                (FileEntry(entry.path, entry.kind, entry.mode, target=entry.target), futures)
            )
            if entry.kind != FILE:
                continue
            with (root / entry.path).open("rb") as stream:
                for chunk in chunk_stream(stream, params):
                    while len(in_flight) >= max_in_flight:
                        in_flight.popleft().result()  # bounds memory: at most this many chunks
                    future = pool.submit(uploader.seal_and_upload, chunk.data)
                    futures.append(future)
                    in_flight.append(future)
                    if progress:
                        progress(len(chunk.data))
    files: list[FileEntry] = []
    seen: set[BlockId] = set()
    for skeleton, futures in planned:
        if skeleton.kind != FILE:
            files.append(skeleton)
            continue
        refs = tuple(future.result() for future in futures)
        size = sum(ref.size for ref in refs)
        stats.files += 1
        stats.bytes += size
        stats.blocks += len(refs)
        seen.update(ref.id for ref in refs)
        files.append(FileEntry(skeleton.path, FILE, skeleton.mode, size, refs))
    stats.unique_blocks = len(seen)
    manifest = Manifest(dataset, time.time(), params, tuple(files), meta or {})
    manifest_id = repo.put_manifest(manifest)
    for tag in tags:
        repo.set_tag(dataset, tag, manifest_id)
    stats.seconds = time.monotonic() - started
    return PushResult(dataset, manifest_id, tuple(tags), stats)
