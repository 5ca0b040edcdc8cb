"""Start a real hub (Hypercorn on a loopback socket) inside a test's nursery, and publish data."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from aetherfs.hub.auth import TokenRegistry
from aetherfs.hub.config import HubConfig
from aetherfs.hub.server import HubAddresses, serve_hub
from aetherfs.ops.push import PushResult, push_directory
from aetherfs.repository import StoreRepository, open_keyring
from aetherfs.store import open_store


@dataclass
class RunningHub:
    url: str
    repo: StoreRepository
    admin: str  # an admin API token
    addresses: HubAddresses
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    def token(self, name: str, kind: str = "user", groups: tuple[str, ...] = ()) -> str:
        return TokenRegistry(self.repo.store).create(name, kind, False, groups)


def open_repo(store_url: str, keys: Path, s3_endpoint: str | None = None) -> StoreRepository:
    store = open_store(store_url, s3_endpoint)
    return StoreRepository(store, open_keyring(store, keys.parent, keys, create=True))


async def start_hub(
    nursery: trio.Nursery, repo: StoreRepository, config: HubConfig | None = None
) -> RunningHub:
    config = config or HubConfig(
        listen="127.0.0.1:0", poll_interval=0.2, token_cache_seconds=0.3, acl_cache_seconds=0.3
    )
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[HubAddresses]) -> None:
        with scope:
            await serve_hub(config, repo, task_status=task_status)

    addresses: HubAddresses = await nursery.start(run)
    admin = TokenRegistry(repo.store).create("root", "user", True)
    return RunningHub(addresses.http, repo, admin, addresses, scope)


def make_tree(root: Path, seed: int = 1, size: int = 300_000) -> None:
    rng = random.Random(seed)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "data.bin").write_bytes(rng.randbytes(size))
    (root / "sub/table.csv").write_text("".join(f"{i},{rng.random()}\n" for i in range(5000)))
    (root / "README").write_text(f"version {seed}\n")


def publish(
    repo: StoreRepository, root: Path, dataset: str, tags: list[str], seed: int = 1
) -> PushResult:
    """Publish straight to the store (a producer with the keyring), as test setup."""
    make_tree(root, seed)
    return push_directory(repo, root, dataset, tags)
