"""Write one version's tree into an empty directory, many blocks at once, memory bounded."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId
from aetherfs.core.manifest import DIRECTORY, FILE, SYMLINK, Manifest
from aetherfs.core.packs import plan_reads
from aetherfs.fetch.planner import BlockFetcher
from aetherfs.ops.atomic import fsync_dir

Progress = Callable[[int], None]


def _placements(manifest: Manifest) -> dict[BlockId, tuple[BlockRef, list[tuple[str, int]]]]:
    places: dict[BlockId, tuple[BlockRef, list[tuple[str, int]]]] = {}
    for entry in manifest.files:
        offset = 0
        for ref in entry.blocks:
            places.setdefault(ref.id, (ref, []))[1].append((entry.path, offset))
            offset += ref.size
    return places


def build_tree(
    manifest: Manifest,
    target: Path,
    fetcher: BlockFetcher,
    workers: int = 8,
    progress: Progress | None = None,
) -> None:
    """Create every directory, file and symlink of `manifest` under the empty `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in manifest.files:
        if entry.kind == DIRECTORY:
            (target / entry.path).mkdir(parents=True, exist_ok=True)
    for entry in manifest.files:
        if entry.kind == FILE:
            path = target / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as f:
                f.truncate(entry.size)

    placements = _placements(manifest)

    def place(batch: tuple[BlockRef, ...]) -> None:
        plaintexts = fetcher.plaintexts(batch)
        for ref in batch:
            data = plaintexts[ref.id]
            spots = placements[ref.id][1]
            for rel, offset in spots:
                fd = os.open(target / rel, os.O_WRONLY)
                try:
                    os.pwrite(fd, data, offset)
                finally:
                    os.close(fd)
            if progress:
                progress(len(data) * len(spots))

    # Batches follow the store's packs, so a batch the store serves is one ranged GET.
    batches = [read.blocks for read in plan_reads(ref for ref, _ in placements.values())]
    in_flight: deque[Future[None]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:
        try:
            for batch in batches:
                while len(in_flight) >= workers + 2:
                    in_flight.popleft().result()
                in_flight.append(pool.submit(place, batch))
            while in_flight:
                in_flight.popleft().result()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise

    for entry in manifest.files:
        path = target / entry.path
        if entry.kind == SYMLINK:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.target, path)
        elif entry.kind == FILE:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(path, entry.mode)
    # Directory modes last: a read-only directory must be filled before it is closed.
    for entry in sorted(manifest.files, key=lambda e: e.path, reverse=True):
        if entry.kind == DIRECTORY:
            os.chmod(target / entry.path, entry.mode | 0o700)
            fsync_dir(target / entry.path)
    fsync_dir(target)
