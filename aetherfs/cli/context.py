"""What every command needs: settings from flags and environment, then a repository."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aetherfs.config import Settings
from aetherfs.errors import InvalidInput
from aetherfs.fetch.cache import BlockCache
from aetherfs.repository import Repository, StoreRepository, open_keyring
from aetherfs.store import open_store

if TYPE_CHECKING:
    from aetherfs.repository.hub_backed import HubRepository


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


@dataclass(frozen=True, slots=True)
class HubContext(Context):
    """A Context whose repository is a hub (`--hub URL` or AETHERFS_HUB)."""

    hub_url: str = ""
    token: str | None = None
    ca_file: str | None = None

    def repository(self, create: bool = False) -> HubRepository:
        # Imported here: httpx is no part of a command that works on a store.
        from aetherfs.repository.hub_backed import HubRepository
        from aetherfs.repository.hub_client import HubClient

        return HubRepository(HubClient(self.hub_url, self.token, self.ca_file))

    def store_repository(self, create: bool = False, needs: str = "") -> StoreRepository:
        raise InvalidInput(
            f"{needs or 'this command'} needs direct store access: run it with --store (and "
            f"the store's keyring), not through the hub {self.hub_url}"
        )
