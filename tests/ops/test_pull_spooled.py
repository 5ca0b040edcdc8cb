"""Pulls and deltas with every manifest's block records on disk (as large manifests are)."""

from __future__ import annotations

import os
from pathlib import Path

from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.sources import CacheSource, StoreSource
from aetherfs.ops.pull import pull_manifest
from aetherfs.repository import StoreRepository
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.ops.test_faults import repository


def spooling(cli: Cli) -> StoreRepository:
    repo = repository(cli)
    return StoreRepository(repo.store, repo.keyring, spool_above=0)


def test_pulls_over_spooled_manifests_are_exact(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    (src / "big.bin").write_bytes(os.urandom(3_000_000))
    cli("push", str(src), "geo:1.0.0")
    (src / "big.bin").write_bytes(os.urandom(100) + (src / "big.bin").read_bytes()[100:])
    (src / "new.txt").write_text("added in v2")
    cli("push", str(src), "geo:2.0.0")  # a delta on 1.0.0

    repo = spooling(cli)
    cache = BlockCache(tmp_path / "cache", limit=10**9)
    out = tmp_path / "out"
    for version in ("1.0.0", "2.0.0"):  # the second over the first: reuse, links, marker
        manifest_id = repo.resolve("geo", version).record.manifest_id
        assert repo.open_stored_manifest("geo", manifest_id).is_delta == (version == "2.0.0")
        manifest = repo.get_manifest("geo", manifest_id)
        files = [e for e in manifest.files if e.kind == "f" and len(e.blocks)]
        assert files and all(e.blocks.on_disk for e in files)  # type: ignore[attr-defined]
        pull_manifest(
            manifest,
            manifest_id,
            out,
            [CacheSource(cache), StoreSource(repo, "geo")],
            cache,
            state_dir=tmp_path / "state",
        )
    assert tree(out) == tree(src)


def test_a_damaged_local_copy_of_a_manifest_is_fetched_again(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    cli("push", str(src), "geo:1.0.0")
    plain = repository(cli)
    cache = tmp_path / "manifests"
    repo = StoreRepository(plain.store, plain.keyring, manifest_cache=cache)
    manifest_id = repo.resolve("geo", "1.0.0").record.manifest_id
    expected = repo.get_manifest("geo", manifest_id)
    local = cache / manifest_id.hex()
    data = bytearray(local.read_bytes())
    data[len(data) // 2] ^= 1
    local.write_bytes(data)
    again = StoreRepository(plain.store, plain.keyring, manifest_cache=cache)  # nothing in memory
    assert again.get_manifest("geo", manifest_id) == expected
    assert local.read_bytes() != data  # the local copy was replaced by the store's
