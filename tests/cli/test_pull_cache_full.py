"""A full cache disk: pull makes room by evicting unpinned blocks, else goes on without caching.

Real CLI processes; the block cache on a 4 MiB tmpfs (mounting needs root, as in CI).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.fetch.test_cache import tmpfs
from tests.fixtures.cache_index import cached_blocks


@pytest.fixture
def small_cache(cli: Cli) -> Iterator[Path]:
    """The CLI's block cache directory, on a 4 MiB tmpfs."""
    blocks = cli.home / "cache" / "aetherfs" / "blocks"
    blocks.parent.mkdir(parents=True)
    with tmpfs(blocks, "4m"):
        yield blocks


def test_a_pull_bigger_than_the_cache_disk_succeeds_with_one_warning(
    cli: Cli, small_cache: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, big=12_000_000)
    cli("push", str(src), "geo:1.0.0")
    out = tmp_path / "out"
    result = cli("pull", "geo:1.0.0", str(out), "--cache-limit", "2M")
    assert tree(out) == tree(src)
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.err
    assert "cache" in warnings[0] and "full" in warnings[0]
    # The next pull, of the same version, still works, the cache helping where it can.
    again = json.loads(cli("pull", "geo:1.0.0", str(tmp_path / "again"), "--json", "--cache").out)
    assert tree(tmp_path / "again") == tree(src)
    assert sum(again["bytes_by_source"].values()) > 0


def test_a_full_cache_disk_makes_room_by_evicting_unpinned_blocks(
    cli: Cli, small_cache: Path, tmp_path: Path
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    make_tree(old, seed=1, big=2_000_000)
    make_tree(new, seed=2, big=2_000_000)
    cli("push", str(old), "old:1.0.0")
    cli("push", str(new), "new:1.0.0")
    cli("pull", "old:1.0.0", str(tmp_path / "o"), "--cache")
    held_old = set(cached_blocks(small_cache))
    assert len(held_old) > 20  # the old version fills most of the 4 MiB
    result = cli("pull", "new:1.0.0", str(tmp_path / "n"), "--cache")
    assert tree(tmp_path / "n") == tree(new)
    assert "warning" not in result.err, result.err  # room was made: every block was cached
    held = set(cached_blocks(small_cache))
    assert held_old - held  # some of the old version's blocks were evicted for it
    again = json.loads(cli("pull", "new:1.0.0", str(tmp_path / "n2"), "--json", "--cache").out)
    assert again["bytes_by_source"].get("store", 0) == 0  # all from the cache
