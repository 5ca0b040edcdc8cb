import pytest

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
    make_delta,
    open_manifest,
    seal_manifest,
)
from aetherfs.errors import IntegrityError

KEY = bytes(range(32))
BASE_ID = ManifestId(b"\7" * 32)


def entry(path: str, content: bytes) -> FileEntry:
    ref = seal_block(content, bytes(32)).ref.located(PackId(b"\5" * 32), 0)
    return FileEntry(path, FILE, 0o644, len(content), (ref,))


def version(*files: FileEntry) -> Manifest:
    return Manifest("geo", 1.0, ChunkParams(), tuple(sorted(files, key=lambda e: e.path)))


def test_small_change_becomes_a_delta_that_resolves_to_the_whole() -> None:
    files = [entry(f"f{i}", f"content {i}".encode()) for i in range(20)]
    base = version(*files)
    new = version(*files[1:10], entry("f10", b"changed"), *files[11:], entry("g", b"added"))
    delta = make_delta(BASE_ID, base, new)
    assert delta.is_delta and delta.depth == 1
    assert [e.path for e in delta.files] == ["f10", "g"]
    assert delta.removed == ("f0",)
    delta_id, stored = seal_manifest(delta, KEY)
    opened = open_manifest(delta_id, stored, "geo", KEY)
    assert opened == delta
    resolved = apply_delta(base, opened)
    assert resolved.files == new.files
    assert resolved.depth == 1


def test_big_change_stays_a_full_manifest() -> None:
    base = version(*(entry(f"f{i}", b"old %d" % i) for i in range(10)))
    new = version(*(entry(f"f{i}", b"new %d" % i) for i in range(10)))
    assert not make_delta(BASE_ID, base, new).is_delta


def test_chains_are_cut_at_max_depth() -> None:
    files = [entry(f"f{i}", b"%d" % i) for i in range(10)]
    base = Manifest("geo", 1.0, ChunkParams(), tuple(files), depth=MAX_DEPTH)
    new = version(*files[:-1], entry("f9", b"x"))
    assert not make_delta(BASE_ID, base, new).is_delta


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
