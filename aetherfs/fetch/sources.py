"""The BlockSource seam: anything that can hand over a block's stored bytes by id.

Every source returns bytes already verified against the id, or None if it has no such block.
Peers slot in beside the cache and the store without the callers changing.
"""

from __future__ import annotations

from typing import Protocol

from aetherfs.cache import BlockCache
from aetherfs.core.blocks import verify_block
from aetherfs.core.ids import BlockId
from aetherfs.errors import NotFound
from aetherfs.repo import Repository


class BlockSource(Protocol):
    name: str

    def fetch(self, block_id: BlockId) -> bytes | None:
        """The verified stored bytes of `block_id`, or None if this source lacks it."""
        ...


class CacheSource:
    name = "cache"

    def __init__(self, cache: BlockCache) -> None:
        self.cache = cache

    def fetch(self, block_id: BlockId) -> bytes | None:
        return self.cache.get(block_id)


class StoreSource:
    name = "store"

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def fetch(self, block_id: BlockId) -> bytes | None:
        try:
            stored = self.repo.get_block(block_id)
        except NotFound:
            return None
        verify_block(block_id, stored)
        return stored
