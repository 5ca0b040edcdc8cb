"""push across many packs built in reused buffers: every block lands where the manifest says."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from aetherfs.core.blocks import open_block
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.packs import plan_reads
from aetherfs.errors import InvalidInput
from aetherfs.keys import Keyring
from aetherfs.ops.push import _read_runs, push_directory
from aetherfs.repository import StoreRepository, open_keyring
from aetherfs.store.local import LocalStore


@pytest.mark.parametrize("cut_elsewhere", [False, True], ids=["cut-here", "cutter-process"])
def test_push_fills_many_reused_pack_buffers_and_reads_back(
    tmp_path: Path, cut_elsewhere: bool
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    files = {
        "random.bin": rng.randbytes(3_000_000),
        "text.csv": "".join(f"{i},{rng.random()}\n" for i in range(120_000)).encode(),
        "copy.bin": b"",  # filled below: the same bytes as random.bin, so every block dedups
        "small": b"tiny",
        "empty": b"",
        "pages.sqlite": b"SQLite format 3\x00" + (4096).to_bytes(2, "big") + os.urandom(40_000),
    }
    files["copy.bin"] = files["random.bin"]
    for name, data in files.items():
        (src / name).write_bytes(data)
    store = LocalStore(tmp_path / "store")
    keyring: Keyring = open_keyring(store, tmp_path / "keys", None, create=True)
    repo = StoreRepository(store, keyring)

    # Packs of ~256 KiB: a few dozen, so both buffers are reused many times over.
    result = push_directory(
        repo,
        src,
        "t/packs",
        ["1.0.0"],
        workers=3,
        pack_target=256 * 1024,
        cut_elsewhere=cut_elsewhere,
    )

    stats = result.stats
    assert stats.packs >= 10
    assert stats.bytes == sum(len(d) for d in files.values())
    assert stats.unique_blocks < stats.blocks  # copy.bin's blocks were sealed but not stored
    assert stats.new_blocks == stats.unique_blocks
    assert len(list(store.list("packs/"))) == stats.packs
    manifest = repo.get_manifest("t/packs", result.manifest_id)
    chunking = {e.path: e.chunking for e in manifest.files}
    assert chunking["pages.sqlite"] == ChunkParams.fixed(4096)  # chosen from its header
    assert chunking["random.bin"] is None  # the default
    for entry in manifest.files:
        if entry.kind != "file":
            continue
        pieces = {}
        for read in plan_reads(entry.blocks):
            for ref, stored in repo.read_range("t/packs", read):
                pieces[ref.id] = open_block(ref, stored)
        assert b"".join(pieces[ref.id] for ref in entry.blocks) == files[entry.path]


def test_a_push_of_nothing_new_uploads_no_pack(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(500_000))
    store = LocalStore(tmp_path / "store")
    repo = StoreRepository(store, open_keyring(store, tmp_path / "keys", None, create=True))
    push_directory(repo, src, "t/again", ["1.0.0"])
    again = push_directory(repo, src, "t/again", ["1.0.1"])
    assert again.stats.packs == 0 and again.stats.new_bytes == 0
    assert again.stats.blocks > 0


def test_the_cutter_process_cuts_exactly_where_push_would(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(11)
    (src / "a.bin").write_bytes(rng.randbytes(9_000_000))  # several windows
    (src / "b.txt").write_bytes(b"".join(b"%d\n" % rng.getrandbits(40) for _ in range(300_000)))
    cuts = {}
    for cut_elsewhere in (False, True):
        store = LocalStore(tmp_path / f"store-{cut_elsewhere}")
        repo = StoreRepository(store, open_keyring(store, tmp_path / "keys", None, create=True))
        result = push_directory(repo, src, "t/cuts", ["1.0.0"], cut_elsewhere=cut_elsewhere)
        manifest = repo.get_manifest("t/cuts", result.manifest_id)
        cuts[cut_elsewhere] = [
            (f.path, [(r.digest, r.size) for r in f.blocks]) for f in manifest.files
        ]
    assert cuts[True] == cuts[False]
    assert len(cuts[True][0][1]) > 50


def test_a_file_that_changes_under_the_cutter_is_refused() -> None:
    runs = [[100_000, 200_000], [50_000]]
    whole = os.urandom(350_000)
    assert [len(d) for d, _ in _read_runs(io.BytesIO(whole), iter(runs), "f")] == [350_000]
    with pytest.raises(InvalidInput, match="shrank"):
        list(_read_runs(io.BytesIO(whole[:-1]), iter(runs), "f"))
    with pytest.raises(InvalidInput, match="grew"):
        list(_read_runs(io.BytesIO(whole + b"x"), iter(runs), "f"))
