"""Delta manifests name a changed file's blocks as edits of the base's list, when that pays."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aetherfs.core.blocklist import BlockList, apply_patch
from aetherfs.core.blocks import BlockRef
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import (
    FILE,
    FileEntry,
    Manifest,
    apply_delta,
    decode,
    encode,
    open_manifest,
)
from aetherfs.errors import IntegrityError
from aetherfs.ops.manifest_builder import ManifestBuilder, PatchBuilder
from aetherfs.repository.spool import FileRecordSpool
from tests.core.test_blocklist import refs

POOL = refs(64)


def patch_of(base: list[BlockRef], new: list[BlockRef], run: int = 7) -> bytes | None:
    builder = PatchBuilder(BlockList(base), len(new))
    for start in range(0, len(new), run):  # fed in runs, as a push streams them
        builder.feed(BlockList(new[start : start + run]))
    return builder.result()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 63), max_size=60),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 63)), max_size=8),
    st.integers(-5, 5),
)
def test_a_patch_applied_to_its_base_gives_the_new_list(
    base_ix: list[int], edits: list[tuple[int, int]], grow: int
) -> None:
    base = [POOL[i] for i in base_ix]
    new = list(base)
    for at, value in edits:  # rewrites in place
        if new:
            new[at % len(new)] = POOL[value]
    new = new + POOL[:grow] if grow > 0 else new[: len(new) + grow] if grow < 0 else new
    patch = patch_of(base, new)
    if patch is not None:
        assert list(apply_patch(BlockList(base), patch)) == new
        assert len(patch) < max(1, len(new)) * 144 / 2 + 12


def test_rewrites_in_place_and_appends_patch_small_and_inserts_give_up() -> None:
    base = refs(1000)
    rewritten = list(base)
    for at in (3, 500, 999):
        rewritten[at] = POOL[0]
    patch = patch_of(base, rewritten)
    assert patch is not None and len(patch) <= 3 * (12 + 144) + 12
    appended = patch_of(base, base + POOL[:5])
    assert appended is not None and len(appended) == 12 + 5 * 144
    shifted = patch_of(base, POOL[:1] + base)  # an insert at the front shifts every block
    assert shifted is None


def test_a_spooled_base_gives_a_spooled_result() -> None:
    spool = FileRecordSpool()
    base_records = BlockList(refs(300)).records
    base = BlockList.spooled(spool, spool.append(base_records), len(base_records))
    new = list(base)
    new[10] = POOL[1]
    patch = patch_of(list(base), new)
    assert patch is not None
    result = apply_patch(base, patch)
    assert result.on_disk and list(result) == new


@pytest.mark.parametrize(
    "patch",
    [b"\x01", (5000).to_bytes(4, "little") + bytes(8), bytes(8) + (1).to_bytes(4, "little")],
)
def test_a_patch_that_does_not_fit_is_an_integrity_error(patch: bytes) -> None:
    blocks = refs(3)
    base = Manifest(
        "d",
        0.0,
        ChunkParams(),
        (FileEntry("f", FILE, size=sum(b.size for b in blocks), blocks=blocks),),
    )
    delta = Manifest(
        "d", 1.0, ChunkParams(), (FileEntry("f", FILE, size=1, patch=patch),),
        base=ManifestId(bytes(32)), depth=1,
    )  # fmt: skip
    with pytest.raises(IntegrityError, match="does not fit"):
        apply_delta(base, decode(encode(delta)))


def test_a_patch_outside_a_delta_or_without_a_base_file_is_refused() -> None:
    whole = Manifest("d", 0.0, ChunkParams(), (FileEntry("f", FILE, size=1, patch=b"x"),))
    with pytest.raises(IntegrityError, match="misplaced"):
        decode(encode(whole))
    delta = Manifest(
        "d", 1.0, ChunkParams(), (FileEntry("g", FILE, size=1, patch=bytes(12)),),
        base=ManifestId(bytes(32)), depth=1,
    )  # fmt: skip
    with pytest.raises(IntegrityError, match="no file at"):
        apply_delta(Manifest("d", 0.0, ChunkParams(), ()), delta)


def test_the_builder_writes_a_patch_into_a_delta_and_the_whole_list_into_a_full_one() -> None:
    blocks = refs(400)
    base = Manifest("d", 0.0, ChunkParams(), (
        FileEntry("big", FILE, size=sum(b.size for b in blocks), blocks=blocks),
        FileEntry("small", FILE, size=blocks[0].size, blocks=blocks[:1]),
        FileEntry("other", FILE, size=blocks[1].size, blocks=blocks[1:2]),
    ))  # fmt: skip
    changed = list(blocks)
    changed[200] = POOL[5]
    size = sum(b.size for b in changed)
    key = bytes(32)
    with ManifestBuilder("d", ChunkParams(), {}, (ManifestId(bytes(32)), base)) as builder:
        builder.add_file(FileEntry("big", FILE, size=size), 400, [BlockList(changed)])
        builder.add(FileEntry("other", FILE, size=blocks[1].size, blocks=blocks[1:2]))
        builder.add(FileEntry("small", FILE, size=blocks[0].size, blocks=blocks[:1]))
        stored: list[bytes] = []
        builder.seal(key, stored.append)

    from aetherfs.core.ids import ManifestId as Id

    raw = b"".join(stored)
    delta = open_manifest(Id(blake3.blake3(raw).digest()), raw, "d", key)
    assert delta.is_delta and [e.path for e in delta.files] == ["big"]
    assert delta.files[0].patch and len(raw) < 1000  # not 400 block records
    whole = apply_delta(base, delta)
    assert list(next(e for e in whole.files if e.path == "big").blocks) == changed
