"""The block cache: segments plus an SQLite index; checked reads, LRU eviction, crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetherfs.core.ids import BlockId
from aetherfs.errors import StoreUnavailable
from aetherfs.fetch.cache import BlockCache
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.fixtures.cache_index import cached_blocks


def blocks(count: int, size: int = 10_000, seed: int = 0) -> list[tuple[BlockId, bytes]]:
    out = []
    for i in range(count):
        data = (f"{seed}-{i}-".encode() * size)[:size]
        out.append((BlockId.of(data), data))
    return out


def segment_files(root: Path) -> list[Path]:
    return sorted((root / "segments").iterdir())


def where(root: Path, block_id: BlockId) -> tuple[Path, int, int]:
    db = sqlite3.connect(root / "index.sqlite")
    try:
        seq, offset, size = db.execute(
            "SELECT segment, offset, size FROM blocks WHERE id = ?", (block_id.digest,)
        ).fetchone()
    finally:
        db.close()
    return root / "segments" / f"{seq:010d}", offset, size


def test_blocks_survive_a_restart_in_few_files(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=10**9)
    items = blocks(300)
    for start in range(0, 300, 100):
        cache.put_many(items[start : start + 100])
    cache.put_many(items[:10])  # held already: nothing written twice
    stats = cache.stats()
    assert stats.blocks == 300 and stats.bytes == 300 * 10_000
    cache.close()

    again = BlockCache(tmp_path / "c", limit=10**9)
    ids = [block_id for block_id, _ in items]
    assert again.get_many(ids) == dict(items)
    assert len(segment_files(tmp_path / "c")) == 1  # one open segment took every batch
    assert again.get_many([BlockId.of(b"never stored")]) == {}
    assert again.has([items[5][0], BlockId.of(b"x")]) == {items[5][0]}


def test_altered_block_is_dropped_not_served(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=10**9)
    items = blocks(5)
    cache.put_many(items)
    victim = items[2][0]
    path, offset, size = where(tmp_path / "c", victim)
    with path.open("r+b") as f:
        f.seek(offset + size // 2)
        f.write(b"\x00altered\x00")
    found = cache.get_many([block_id for block_id, _ in items])
    assert victim not in found and len(found) == 4
    assert cache.corrupt_dropped == 1
    assert not cache.has([victim])  # dropped from the index: refetched next time, then kept
    cache.put_many([items[2]])
    assert cache.get_many([victim]) == {victim: items[2][1]}


def test_garbage_index_starts_the_cache_afresh(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=10**9)
    cache.put_many(blocks(3))
    cache.close()
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        if (tmp_path / "c" / name).exists():
            (tmp_path / "c" / name).write_bytes(b"garbage" * 1000)
    again = BlockCache(tmp_path / "c", limit=10**9)
    assert again.stats().blocks == 0
    again.put_many(blocks(2, seed=1))
    assert again.stats().blocks == 2


def test_one_file_per_block_layout_is_removed(tmp_path: Path) -> None:
    legacy = tmp_path / "c" / "ab" / ("ab" + "0" * 62)
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old")
    cache = BlockCache(tmp_path / "c", limit=10**9)
    assert cache.stats().blocks == 0
    assert not legacy.parent.exists()


def test_eviction_drops_least_recently_used_and_moves_pinned(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=30_000, segment_bytes=20_000)
    old, mid, new = blocks(2, seed=1), blocks(2, seed=2), blocks(2, seed=3)
    for group in (old, mid, new):  # each group fills one segment
        cache.put_many(group)
        time.sleep(0.01)
    assert len(segment_files(tmp_path / "c")) == 3
    cache.get_many([mid[0][0]])  # `mid` is now the most recently used
    pinned = {old[0][0]}
    freed = cache.evict(pinned=pinned)
    held = cache.has(block_id for block_id, _ in old + mid + new)
    # `old` went first (its pinned block moved out), then `new`; `mid` was used last.
    assert held == {old[0][0], mid[0][0], mid[1][0]}
    assert freed == 60_000 - 30_000
    assert cache.usage() == 30_000  # at the limit: `mid` stays
    assert cache.get_many([old[0][0]]) == {old[0][0]: old[0][1]}


def test_segment_of_pinned_blocks_only_is_kept(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=0, segment_bytes=20_000)
    items = blocks(2)
    cache.put_many(items)
    assert cache.evict(pinned=[block_id for block_id, _ in items]) == 0
    assert cache.stats().blocks == 2


def test_discard_drops_what_is_picked_whatever_the_limit(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=10**9, segment_bytes=20_000)
    first, second = blocks(2, seed=1), blocks(2, seed=2)
    cache.put_many(first)  # one segment each
    cache.put_many(second)
    going = {first[0][0], first[1][0], second[0][0]}
    asked: list[list[BlockId]] = []

    def pick(ids: list[BlockId]) -> set[BlockId]:
        asked.append(ids)
        return going & set(ids)

    freed = cache.discard(pick)
    assert freed == 30_000
    assert all(len(ids) <= 2 for ids in asked)  # one segment's blocks at a time
    assert cache.has(b for b, _ in first + second) == {second[1][0]}
    assert cache.get_many([second[1][0]]) == {second[1][0]: second[1][1]}  # moved, intact
    assert len(segment_files(tmp_path / "c")) == 1
    assert cache.discard(pick) == 0


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c", limit=10**9, segment_bytes=200_000)
    groups = [blocks(40, seed=s) for s in range(6)]
    errors: list[BaseException] = []

    def work(group: list[tuple[BlockId, bytes]]) -> None:
        try:
            for start in range(0, len(group), 8):
                cache.put_many(group[start : start + 8])
                assert cache.get_many([b for b, _ in group[: start + 8]]) == dict(
                    group[: start + 8]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.stats().blocks == 240


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from aetherfs.fetch.cache import BlockCache
    from aetherfs.core.ids import BlockId

    cache = BlockCache(Path(sys.argv[1]), limit=10**12, segment_bytes=4_000_000)
    i = 0
    while True:
        batch = []
        for _ in range(16):
            data = (f"{i}-".encode() * 8000)[:60_000]
            batch.append((BlockId.of(data), data))
            i += 1
        cache.put_many(batch)
        if i == 320:
            print("ready", flush=True)
    """
)


def test_kill_9_while_writing_leaves_only_whole_blocks_indexed(tmp_path: Path) -> None:
    root = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cache = BlockCache(root, limit=10**12)
    db = sqlite3.connect(root / "index.sqlite")
    ids = [BlockId(row[0]) for row in db.execute("SELECT id FROM blocks")]
    db.close()
    assert len(ids) >= 320
    assert len(cache.get_many(ids)) == len(ids) and cache.corrupt_dropped == 0
    # The cache goes on from there: new blocks land in a segment of their own.
    cache.put_many(blocks(3, seed=9))
    assert cache.stats().blocks == len(ids) + 3


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("spared", [False, True])
def test_full_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path, spared: bool) -> None:
    # Outside `sparing` no room is made; inside, the spared blocks stay.
    with tmpfs(tmp_path / "small", "2m") as mount:
        cache = BlockCache(mount / "c", limit=10**9)
        first = blocks(10, size=50_000)
        cache.put_many(first)
        with (
            cache.sparing(lambda: [b for b, _ in first]) if spared else contextlib.nullcontext(),
            pytest.raises(StoreUnavailable, match="No space left on device"),
        ):
            cache.put_many(blocks(40, size=50_000, seed=1))
        assert cache.get_many([b for b, _ in first]) == dict(first)
        cache.close()


def test_a_full_disk_frees_unspared_blocks_even_beside_spared_ones(tmp_path: Path) -> None:
    """Old blocks share segments with blocks of the version being pulled (versions share
    blocks): the old ones' bytes are punched out, the spared ones stay readable."""
    with tmpfs(tmp_path / "small", "2m") as mount:
        old = BlockCache(mount / "c", limit=10**9)
        mixed = blocks(30, size=50_000, seed=1)  # 1.5 MB in one segment
        old.put_many(mixed)
        old.close()
        spared = mixed[::10]
        cache = BlockCache(mount / "c", limit=10**9)
        new = blocks(20, size=50_000, seed=2)  # 1 MB more does not fit beside it
        with cache.sparing(lambda: [b for b, _ in spared + new]):
            for start in range(0, len(new), 5):
                cache.put_many(new[start : start + 5])
        assert cache.get_many([b for b, _ in spared + new]) == dict(spared + new)
        assert cache.corrupt_dropped == 0
        assert cache.has(b for b, _ in mixed) == {b for b, _ in spared}
        assert cache.usage() == 50_000 * (len(spared) + len(new))
        cache.close()


def test_a_full_disk_with_nothing_to_free_stops_caching_with_one_warning(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as mount:
        said: list[str] = []
        cache = BlockCache(mount / "c", limit=10**9, on_full=said.append)
        items = blocks(40, size=50_000)  # 2 MB, all spared
        with cache.sparing(lambda: [b for b, _ in items]):
            for start in range(0, len(items), 4):
                cache.put_many(items[start : start + 4])  # never raises
        assert len(said) == 1 and "full" in said[0], said
        assert cache.writes_off
        held = cache.has(b for b, _ in items)
        assert 0 < len(held) < len(items)
        assert cache.get_many(sorted(held, key=lambda b: b.digest)).keys() == held  # reads go on
        cache.close()


def test_eviction_reaches_the_segment_still_open_for_appending(tmp_path: Path) -> None:
    # One process, one open segment holding an old version's blocks and a new one's.
    cache = BlockCache(tmp_path / "c", limit=0)
    old, new = blocks(3, seed=1), blocks(3, seed=2)
    cache.put_many(old)
    cache.put_many(new)
    assert len(segment_files(tmp_path / "c")) == 1
    cache.evict(pinned=[block_id for block_id, _ in new])
    assert cache.has(b for b, _ in old + new) == {b for b, _ in new}
    assert cache.usage() == 30_000
    assert cache.get_many([b for b, _ in new]) == dict(new)
    cache.put_many(blocks(1, seed=3))  # appending goes on, in a fresh segment
    assert cache.stats().blocks == 4


def test_two_pulls_at_once_share_one_cache(cli: Cli, tmp_path: Path) -> None:
    # Two processes writing the same cache at the same time: SQLite serialises the index,
    # each appends to segments of its own; both trees come out exact.
    src = tmp_path / "src"
    make_tree(src, big=6_000_000)
    cli("push", str(src), "geo:1.0.0")
    pull = [sys.executable, "-m", "aetherfs.cli.main", "pull", "--cache", "geo:1.0.0"]
    pulls = [
        subprocess.Popen(
            [*pull, str(tmp_path / n)],  # --cache: the cache is off by default
            env=cli.env,
            stderr=subprocess.PIPE,
        )
        for n in ("a", "b")
    ]
    for proc in pulls:
        assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
    assert tree(tmp_path / "a") == tree(src) == tree(tmp_path / "b")
    root = cli.home / "cache" / "aetherfs" / "blocks"
    ids = [BlockId(bytes.fromhex(h)) for h in cached_blocks(root)]
    cache = BlockCache(root, limit=10**12)
    assert ids and len(cache.get_many(ids)) == len(ids) == cache.stats().blocks
    assert cache.corrupt_dropped == 0
