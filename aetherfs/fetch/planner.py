"""Get each block from the cheapest source that has it: local bytes, cache, peers, store.

Blocks fetched from a remote source are written to the cache before use, so an interrupted
pull resumes without fetching them again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aetherfs.core.blocks import BlockRef, open_block_view
from aetherfs.core.ids import BlockId
from aetherfs.errors import NotFound
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.local import LocalChunk, read_local_chunk
from aetherfs.fetch.sources import BlockSource


class LocalChunks(Protocol):
    """Where a reader already has a block's plaintext on disk, by its BLAKE3 (a dict from
    `ops/reuse.py`, or the agent's index of its trees)."""

    def get(self, digest: bytes, /) -> LocalChunk | None: ...


@dataclass(slots=True)
class SourceCounts:
    blocks: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)  # bytes moved from each source

    def add(self, source: str, blocks: int, size: int) -> None:
        self.blocks[source] = self.blocks.get(source, 0) + blocks
        self.bytes[source] = self.bytes.get(source, 0) + size


class BlockFetcher:
    def __init__(
        self,
        sources: Sequence[BlockSource],
        cache: BlockCache | None = None,
        local: LocalChunks | None = None,
    ) -> None:
        self.sources = sources
        self.cache = cache
        self.local: LocalChunks = local if local is not None else {}
        self.counts = SourceCounts()
        self._lock = threading.Lock()

    def plaintext(self, ref: BlockRef) -> bytes | memoryview:
        """One block's verified plaintext; NotFound if no source has it."""
        return self.plaintexts([ref])[ref.id]

    def plaintexts(self, refs: Sequence[BlockRef]) -> dict[BlockId, bytes | memoryview]:
        """Verified plaintext of every block in `refs`; NotFound if a source-less one remains.

        An uncompressed block's plaintext is a view of the buffer it was decrypted into (see
        `open_block_view`): written out as it is, never copied.
        """
        result: dict[BlockId, bytes | memoryview] = {}
        wanted = self._not_local(refs, result) if self.local else list(refs)
        for source in self.sources:
            if not wanted:
                break
            found = source.fetch(wanted)
            still: list[BlockRef] = []
            moved = 0
            if self.cache is not None and source.name != "cache" and found:
                # Kept before use: a pull killed after this point does not fetch them again.
                self.cache.put_many(list(found.items()))
            for ref in wanted:
                stored = found.get(ref.id)
                if stored is None:
                    still.append(ref)
                    continue
                result[ref.id] = open_block_view(ref, stored, verified=True)
                moved += len(stored)
            if len(still) < len(wanted):
                self._count(source.name, len(wanted) - len(still), moved)
            wanted = still
        if wanted:
            names = ", ".join(s.name for s in self.sources)
            raise NotFound(
                f"{len(wanted)} blocks (first {wanted[0].id.short()}) are in none of the "
                f"sources ({names})"
            )
        return result

    def _not_local(
        self, refs: Sequence[BlockRef], result: dict[BlockId, bytes | memoryview]
    ) -> list[BlockRef]:
        """Those of `refs` not on local disk; the others' bytes go into `result`."""
        wanted: list[BlockRef] = []
        for ref in refs:
            chunk = self.local.get(ref.digest)
            data = read_local_chunk(chunk, ref.digest) if chunk is not None else None
            if data is not None:
                result[ref.id] = data
                self._count("local", 1, len(data))
            else:
                wanted.append(ref)
        return wanted

    def _count(self, source: str, blocks: int, size: int) -> None:
        with self._lock:
            self.counts.add(source, blocks, size)
