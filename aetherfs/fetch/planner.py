"""Get each block from the cheapest source that has it: local bytes, cache, peers, store.

Blocks fetched from a remote source are written to the cache before use, so an interrupted
pull resumes without fetching them again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from aetherfs.cache import BlockCache
from aetherfs.core.blocks import BlockRef, open_block
from aetherfs.errors import NotFound
from aetherfs.fetch.sources import BlockSource
from aetherfs.ops.reuse import LocalChunk, read_local_chunk


@dataclass(slots=True)
class SourceCounts:
    blocks: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)  # bytes moved from each source

    def add(self, source: str, size: int) -> None:
        self.blocks[source] = self.blocks.get(source, 0) + 1
        self.bytes[source] = self.bytes.get(source, 0) + size


class BlockFetcher:
    def __init__(
        self,
        sources: Sequence[BlockSource],
        cache: BlockCache | None = None,
        local: dict[bytes, LocalChunk] | None = None,
    ) -> None:
        self.sources = sources
        self.cache = cache
        self.local = local or {}
        self.counts = SourceCounts()
        self._lock = threading.Lock()

    def plaintext(self, ref: BlockRef) -> bytes:
        """The block's verified plaintext; NotFound if no source has it."""
        chunk = self.local.get(ref.digest)
        if chunk is not None:
            data = read_local_chunk(chunk, ref.digest)
            if data is not None:
                self._count("local", len(data))
                return data
        for source in self.sources:
            stored = source.fetch(ref.id)
            if stored is None:
                continue
            plaintext = open_block(ref, stored)
            if self.cache is not None and source.name != "cache":
                self.cache.put(ref.id, stored)
            self._count(source.name, len(stored))
            return plaintext
        names = ", ".join(s.name for s in self.sources)
        raise NotFound(f"block {ref.id.short()} is in none of the sources ({names})")

    def _count(self, source: str, size: int) -> None:
        with self._lock:
            self.counts.add(source, size)
