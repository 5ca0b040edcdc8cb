"""Blocks served from a tree, sealed again: the producer's bytes, or nothing."""

from __future__ import annotations

import dataclasses
import os
import random
import resource
from pathlib import Path

import pytest

from aetherfs.agent.tree_blocks import LEVELS, TreeBlocks
from aetherfs.core.blocklist import BlockList, pack_record
from aetherfs.core.blocks import REBUILT_LEVEL, SealedBlock, seal_block
from aetherfs.core.chunking import DEFAULT_PARAMS
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.errors import NotFound

SECRET = b"s" * 32
VERSION = ManifestId(b"\1" * 32)


def text(seed: int, size: int = 50_000) -> bytes:
    """Compressible bytes (zstd keeps them), different per seed."""
    rng = random.Random(seed)
    words = [rng.randbytes(4).hex() for _ in range(64)]
    return " ".join(rng.choice(words) for _ in range(size // 9)).encode()[:size]


def write_version(base: Path, files: dict[str, list[tuple[bytes, int]]]) -> Manifest:
    """Each file's chunks sealed at their level, written end to end under `base`."""
    entries = []
    for path, chunks in files.items():
        sealed: list[SealedBlock] = [seal_block(data, SECRET, level) for data, level in chunks]
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_bytes(b"".join(data for data, _ in chunks))
        (base / path).chmod(0o444)
        entries.append(
            FileEntry(path, FILE, 0o444, sum(len(d) for d, _ in chunks), [s.ref for s in sealed])
        )
    return Manifest("team/geo-db", 0.0, DEFAULT_PARAMS, tuple(entries))


def stored(files: dict[str, list[tuple[bytes, int]]]) -> dict[BlockId, bytes]:
    out = {}
    for chunks in files.values():
        for data, level in chunks:
            s = seal_block(data, SECRET, level)
            out[s.ref.id] = s.stored
    return out


def test_every_block_is_sealed_again_to_the_producers_bytes(tmp_path: Path) -> None:
    files = {
        "a.txt": [(text(1), 1), (os.urandom(40_000), 1), (text(2), 1)],  # raw in the middle
        "rebuilt.db": [(text(3), REBUILT_LEVEL), (text(4), REBUILT_LEVEL)],
    }
    manifest = write_version(tmp_path / "v1", files)
    trees = TreeBlocks()
    assert trees.index(VERSION, manifest, tmp_path / "v1") == 5
    want = stored(files)
    ids = list(want)
    assert all(trees.has(i) for i in ids) and trees.known(ids) == set(ids)
    assert trees.read(ids) == [want[i] for i in ids]
    assert trees.read([ids[0], ids[0]]) == [want[ids[0]]] * 2  # a block asked twice
    served = trees.served()
    assert served["tree_blocks"] == 7 and served["mismatched"] == 0 == served["altered"]
    # The plaintext a build needs, by digest, where the tree holds it.
    ref = manifest.files[0].blocks[1]
    chunk = trees.get(ref.digest)
    assert chunk is not None and chunk.path == tmp_path / "v1/a.txt"
    assert (chunk.offset, chunk.size) == (len(files["a.txt"][0][0]), 40_000)
    trees.forget(VERSION)
    assert not trees.has(ids[0]) and trees.get(ref.digest) is None
    with pytest.raises(NotFound):
        trees.read(ids[:1])


def test_a_tree_changed_on_disk_is_never_served(tmp_path: Path) -> None:
    files = {"a.txt": [(text(1), 1), (text(2), 1)]}
    manifest = write_version(tmp_path / "v1", files)
    trees = TreeBlocks()
    trees.index(VERSION, manifest, tmp_path / "v1")
    first, second = list(stored(files))
    path = tmp_path / "v1/a.txt"
    path.chmod(0o644)
    with path.open("r+b") as f:  # root ignores the read-only mode: a byte of block two
        f.seek(60_000)
        f.write(b"X")
    assert trees.read([first]) == [stored(files)[first]]
    with pytest.raises(NotFound, match="cannot be served"):
        trees.read([first, second])
    assert trees.served()["altered"] == 1
    # A build does not take it either: the fetcher re-hashes what `get` points at.
    from aetherfs.fetch.local import read_local_chunk

    ref = manifest.files[0].blocks[1]
    chunk = trees.get(ref.digest)
    assert chunk is not None and read_local_chunk(chunk, ref.digest) is None


def test_a_block_sealed_again_to_other_bytes_is_not_served(tmp_path: Path) -> None:
    """A producer whose zstd level is none we know (or another zstd): every candidate level
    seals to another id, so the block is refused and its file given up (no more CPU spent)."""
    odd = 19
    assert odd not in LEVELS
    files = {"odd.txt": [(text(5), odd), (text(6), odd)], "ok.txt": [(text(7), 1)]}
    manifest = write_version(tmp_path / "v1", files)
    trees = TreeBlocks()
    trees.index(VERSION, manifest, tmp_path / "v1")
    odd_ids = [r.id for r in manifest.files[0].blocks]
    ok_id = manifest.files[1].blocks[0].id
    with pytest.raises(NotFound):
        trees.read(odd_ids[:1])
    assert trees.served()["mismatched"] == 1
    assert not trees.has(odd_ids[1])  # the file is given up: not offered, not sealed again
    with pytest.raises(NotFound):
        trees.read(odd_ids[1:])
    assert trees.served()["mismatched"] == 1
    assert trees.read([ok_id]) == [stored(files)[ok_id]]


def test_the_level_is_learnt_per_file(tmp_path: Path) -> None:
    """A rebuilt file (zstd 6) in a manifest that does not say so: level 1 seals to other
    bytes, level 6 to the producer's, and is tried first from then on."""
    files = {"rebuilt.db": [(text(i), REBUILT_LEVEL) for i in range(3)]}
    manifest = write_version(tmp_path / "v1", files)
    trees = TreeBlocks()
    trees.index(VERSION, manifest, tmp_path / "v1")
    want = stored(files)
    assert trees.read(list(want)) == list(want.values())
    assert trees.served()["mismatched"] == 0


def test_a_level_the_manifest_pins_is_the_only_one_tried(tmp_path: Path) -> None:
    """A manifest that names a file's level (push does for rebuilt files) is believed: its
    blocks are sealed at that level only, and a level that does not reproduce them (here a
    manifest saying 6 of blocks sealed at 1) is not guessed past."""
    files = {"rebuilt.db": [(text(1), REBUILT_LEVEL)], "wrong.db": [(text(2), 1)]}
    manifest = write_version(tmp_path / "v1", files)
    pinned = tuple(
        dataclasses.replace(e, level=REBUILT_LEVEL) for e in manifest.files
    )  # both say 6
    manifest = dataclasses.replace(manifest, files=pinned)
    trees = TreeBlocks()
    trees.index(VERSION, manifest, tmp_path / "v1")
    rebuilt, wrong = (e.blocks[0].id for e in manifest.files)
    assert trees.read([rebuilt]) == [stored(files)[rebuilt]]
    with pytest.raises(NotFound):
        trees.read([wrong])
    assert trees.served()["mismatched"] == 1


def test_index_memory_stays_flat_with_the_version(tmp_path: Path) -> None:
    """200,000 blocks (a 12 GiB version at 64 KiB) cost the index a few MB of RSS at most: its
    rows live in SQLite's temporary file, not in Python objects (about 150 bytes per block
    there would be 30 MB)."""
    count = 200_000
    rng = random.Random(1)
    records = b"".join(
        pack_record(rng.randbytes(32), rng.randbytes(32), rng.randbytes(32), None, 65536, 65600, 0)
        for _ in range(count)
    )
    entry = FileEntry("big", FILE, 0o444, 65536 * count, BlockList.from_records(records))
    manifest = Manifest("team/geo-db", 0.0, DEFAULT_PARAMS, (entry,))
    del records
    trees = TreeBlocks()
    before = _rss()
    assert trees.index(VERSION, manifest, tmp_path) == count
    grown = _rss() - before
    assert grown < 8 * 1024 * 1024, grown
    first = BlockId(next(iter(entry.blocks)).id.digest)
    assert trees.has(first)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
