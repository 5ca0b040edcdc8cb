"""What every command needs: settings from flags and environment, then a repository."""

from __future__ import annotations

from dataclasses import dataclass

from aetherfs.config import Settings
from aetherfs.fetch.cache import BlockCache
from aetherfs.repo import Repository, open_keyring
from aetherfs.store import open_store


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    json: bool = False

    def repository(self, create: bool = False) -> Repository:
        s = self.settings
        store = open_store(s.store_url, s.s3_endpoint, s.s3_region)
        keyring = open_keyring(store, s.keys_dir, s.keys_path, create=create)
        return Repository(store, keyring, manifest_cache=s.manifest_cache_dir)

    def cache(self) -> BlockCache:
        return BlockCache(self.settings.cache_dir, self.settings.cache_limit)
