"""A version larger than one planning window: blocks shared across windows and files, repeated
blocks within a file, and every file fsync-ed once it is whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aetherfs.core.blocklist import BlockList
from aetherfs.core.blocks import seal_block
from aetherfs.core.ids import PackId
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.sources import CacheSource, StoreSource
from aetherfs.ops import materialise, reuse
from aetherfs.ops.pull import pull_manifest
from tests.cli.test_push_pull import tree
from tests.conftest import Cli
from tests.ops.test_faults import repository


def test_pull_over_many_windows_is_exact(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shared = os.urandom(300_000)
    for i in range(6):
        # The same bytes in every file (deduplicated into the same blocks), a repeated block
        # inside each, and bytes of its own.
        (src / f"f{i}.bin").write_bytes(shared + os.urandom(200_000) + shared[:70_000] * 3)
    (src / "empty").write_bytes(b"")
    cli("push", str(src), "geo:1.0.0")
    repo = repository(cli)
    manifest_id = repo.resolve("geo", "1.0.0").record.manifest_id
    manifest = repo.get_manifest("geo", manifest_id)

    synced: list[int] = []
    real_fsync = os.fsync
    # Windows smaller than a file (about 1 MB): they end in the middle of files.
    monkeypatch.setattr(materialise, "WINDOW_BYTES", 700_000)

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    cache = BlockCache(tmp_path / "cache", limit=10**9)
    result = pull_manifest(
        manifest,
        manifest_id,
        tmp_path / "out",
        [CacheSource(cache), StoreSource(repo, "geo")],
        cache,
        workers=1,  # in order: a later window finds the earlier one's blocks in the cache
        state_dir=tmp_path / "state",
    )
    assert tree(tmp_path / "out") == tree(src)
    # Blocks shared by windows after the first came from the cache, not the store again.
    assert result.counts.blocks.get("cache", 0) > 0
    unique = len(manifest.unique_blocks())
    assert result.counts.blocks["store"] == unique
    assert len(synced) >= 7  # every file, the empty one included (plus directories)


def test_a_marker_record_of_many_runs_reads_back_whole(tmp_path: Path) -> None:
    """A large file's block list is written a run at a time; read back, it is the same list."""
    count = 2 * reuse._RUN + 7  # three runs
    refs = [
        seal_block(i.to_bytes(4, "big"), bytes(32)).ref.located(PackId(bytes(32)), i)
        for i in range(count)
    ]
    blocks = BlockList(refs)
    stamp = reuse.Stamp(4 * count, 123, 456)
    marker = tmp_path / "marker"
    with reuse.MarkerWriter(marker, {"dataset": "geo"}) as writer:
        writer.add("small", reuse.Stamp(4, 1, 2), 0o644, BlockList(refs[:1]))
        writer.add("d/big.db", stamp, 0o640, blocks)
        writer.finish()
    record = reuse.read_marker(marker)["d/big.db"]
    assert record.stamp == stamp and record.mode == 0o640 and record.count == count
    assert list(record.blocks()) == list(blocks.digests_and_sizes())
    assert record.fingerprint == reuse.fingerprint(blocks.digests_and_sizes())
