"""Versions built entry by entry (ManifestBuilder), stored whole or as deltas on a base."""

import pytest

from aetherfs.core.blocklist import BlockList
from aetherfs.core.blocks import seal_block
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.manifest import (
    DIRECTORY,
    FILE,
    MAX_DEPTH,
    FileEntry,
    Manifest,
    apply_delta,
    open_manifest,
    seal_manifest,
)
from aetherfs.errors import IntegrityError
from aetherfs.ops.manifest_builder import ManifestBuilder

KEY = bytes(range(32))
BASE_ID = ManifestId(b"\7" * 32)


def entry(path: str, content: bytes) -> FileEntry:
    ref = seal_block(content, bytes(32)).ref.located(PackId(b"\5" * 32), 0)
    return FileEntry(path, FILE, 0o644, len(content), (ref,))


def version(*files: FileEntry) -> Manifest:
    return Manifest("geo", 1.0, ChunkParams(), tuple(sorted(files, key=lambda e: e.path)))


def built(new: Manifest, base: Manifest | None = None, streamed: bool = False) -> Manifest:
    """`new` built entry by entry on `base` (as BASE_ID), sealed and opened again."""
    sealed: list[bytes] = []
    with ManifestBuilder("geo", ChunkParams(), {}, None if base is None else (BASE_ID, base)) as b:
        for e in new.files:
            if streamed and e.kind == FILE:
                blocks = BlockList(e.blocks)
                runs = (blocks[i : i + 1] for i in range(len(blocks)))
                b.add_file(FileEntry(e.path, FILE, e.mode, e.size), len(blocks), runs)
            else:
                b.add(e)
        manifest_id = b.seal(KEY, sealed.append)
    return open_manifest(manifest_id, b"".join(sealed), "geo", KEY)


def test_small_change_becomes_a_delta_that_resolves_to_the_whole() -> None:
    files = [entry(f"f{i}", f"content {i}".encode()) for i in range(20)]
    base = version(*files)
    new = version(*files[1:10], entry("f10", b"changed"), *files[11:], entry("g", b"added"))
    delta = built(new, base)
    assert delta.is_delta and delta.depth == 1 and delta.base == BASE_ID
    assert [e.path for e in delta.files] == ["f10", "g"]
    assert delta.removed == ("f0",)
    resolved = apply_delta(base, delta)
    assert resolved.files == new.files
    assert resolved.depth == 1


def test_big_change_stays_a_full_manifest() -> None:
    base = version(*(entry(f"f{i}", b"old %d" % i) for i in range(10)))
    new = version(*(entry(f"f{i}", b"new %d" % i) for i in range(10)))
    assert not built(new, base).is_delta


def test_chains_are_cut_at_max_depth() -> None:
    files = [entry(f"f{i}", b"%d" % i) for i in range(10)]
    base = Manifest("geo", 1.0, ChunkParams(), tuple(files), depth=MAX_DEPTH)
    new = version(*files[:-1], entry("f9", b"x"))
    assert not built(new, base).is_delta


def test_a_delta_that_breaks_the_tree_is_refused_when_applied() -> None:
    base = version(entry("d", b"a file"))
    evil = Manifest(
        "geo", 1.0, ChunkParams(), (entry("d/x", b"under a file"),), base=BASE_ID, depth=1
    )
    with pytest.raises(IntegrityError, match="non-directory"):
        apply_delta(base, evil)
    ok = Manifest(
        "geo", 1.0, ChunkParams(), (FileEntry("e", DIRECTORY, 0o755),), base=BASE_ID, depth=1
    )
    assert [e.path for e in apply_delta(base, ok).files] == ["d", "e"]


def test_removed_paths_are_checked() -> None:
    bad = Manifest("geo", 1.0, ChunkParams(), (), base=BASE_ID, removed=("../x",), depth=1)
    with pytest.raises(IntegrityError):
        seal_manifest(bad, KEY)


def test_a_version_with_no_base_is_whole_and_equal_to_its_entries() -> None:
    new = version(
        entry("a/x", b"x" * 100),
        FileEntry("a", DIRECTORY, 0o755),
        FileEntry("b", FILE, 0o600, 0),
    )
    for streamed in (False, True):
        opened = built(new, streamed=streamed)
        assert not opened.is_delta
        assert opened.files == new.files


def test_a_bad_entry_is_refused_before_anything_is_sealed() -> None:
    with ManifestBuilder("geo", ChunkParams(), {}) as builder:
        with pytest.raises(IntegrityError, match="path"):
            builder.add(entry("../escaped", b"x"))
        a = entry("a", b"abc")
        with pytest.raises(IntegrityError, match="do not add up"):
            builder.add_file(FileEntry("b", FILE, 0o644, 4), 1, (BlockList(a.blocks),))


def test_a_file_under_a_file_is_refused_when_sealed() -> None:
    with ManifestBuilder("geo", ChunkParams(), {}) as builder:
        builder.add(entry("d", b"a file"))
        builder.add(entry("d/x", b"under it"))
        with pytest.raises(IntegrityError, match="non-directory"):
            builder.seal(KEY, lambda _: None)
