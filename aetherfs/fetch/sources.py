"""The BlockSource seam: anything that can hand over blocks' stored bytes, in batches.

Every source returns bytes already verified against their ids, and only for the blocks it has.
Peers slot in beside the cache and the store without the callers changing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId
from aetherfs.fetch.cache import BlockCache
from aetherfs.repository import Repository


class BlockSource(Protocol):
    name: str

    def fetch(self, refs: Sequence[BlockRef]) -> Mapping[BlockId, bytes | memoryview]:
        """Verified stored bytes of those of `refs` this source has (views of a larger read,
        where that spares a copy)."""
        ...


class CacheSource:
    name = "cache"

    def __init__(self, cache: BlockCache) -> None:
        self.cache = cache

    def fetch(self, refs: Sequence[BlockRef]) -> Mapping[BlockId, bytes | memoryview]:
        return self.cache.get_many([ref.id for ref in refs])


class StoreSource:
    """The seed every other source falls back to: packs on the store, read by range."""

    name = "store"

    def __init__(self, repo: Repository, dataset: str) -> None:
        self.repo = repo
        self.dataset = dataset  # whose blocks: through a hub, that dataset's ACL decides

    def fetch(self, refs: Sequence[BlockRef]) -> Mapping[BlockId, bytes | memoryview]:
        return self.repo.get_blocks(self.dataset, refs)
