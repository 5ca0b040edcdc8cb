"""What every command needs: settings from flags and environment, then a repository."""

from __future__ import annotations

from dataclasses import dataclass

from aetherfs.config import Settings
from aetherfs.fetch.cache import BlockCache
from aetherfs.repository import Repository, StoreRepository, open_keyring
from aetherfs.store import open_store


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    json: bool = False

    def repository(self, create: bool = False) -> Repository:
        """The datasets the command works on: on the store here, through a hub in HubContext."""
        return self.store_repository(create)

    def store_repository(self, create: bool = False, needs: str = "") -> StoreRepository:
        """The store itself, for what only its owner does (gc, repair, the hub's objects);
        `needs` names that, for the refusal a hub context gives."""
        s = self.settings
        store = open_store(s.store_url, s.s3_endpoint, s.s3_region)
        keyring = open_keyring(store, s.keys_dir, s.keys_path, create=create)
        return StoreRepository(store, keyring, manifest_cache=s.manifest_cache_dir)

    def cache(self) -> BlockCache:
        return BlockCache(self.settings.cache_dir, self.settings.cache_limit)
