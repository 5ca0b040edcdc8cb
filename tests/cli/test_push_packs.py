"""push across many packs built in reused buffers: every block lands where the manifest says."""

from __future__ import annotations

import os
import random
from pathlib import Path

from aetherfs.core.blocks import open_block
from aetherfs.core.packs import plan_reads
from aetherfs.keys import Keyring
from aetherfs.ops.push import push_directory
from aetherfs.repo import Repository, open_keyring
from aetherfs.store.local import LocalStore


def test_push_fills_many_reused_pack_buffers_and_reads_back(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    files = {
        "random.bin": rng.randbytes(3_000_000),
        "text.csv": "".join(f"{i},{rng.random()}\n" for i in range(120_000)).encode(),
        "copy.bin": b"",  # filled below: the same bytes as random.bin, so every block dedups
        "small": b"tiny",
    }
    files["copy.bin"] = files["random.bin"]
    for name, data in files.items():
        (src / name).write_bytes(data)
    store = LocalStore(tmp_path / "store")
    keyring: Keyring = open_keyring(store, tmp_path / "keys", None, create=True)
    repo = Repository(store, keyring)

    # Packs of ~256 KiB: a few dozen, so both buffers are reused many times over.
    result = push_directory(repo, src, "t/packs", ["1.0.0"], workers=3, pack_target=256 * 1024)

    stats = result.stats
    assert stats.packs >= 10
    assert stats.bytes == sum(len(d) for d in files.values())
    assert stats.unique_blocks < stats.blocks  # copy.bin's blocks were sealed but not stored
    assert stats.new_blocks == stats.unique_blocks
    assert len(list(store.list("packs/"))) == stats.packs
    manifest = repo.get_manifest("t/packs", result.manifest_id)
    for entry in manifest.files:
        if entry.kind != "file":
            continue
        pieces = {}
        for read in plan_reads(entry.blocks):
            for ref, stored in repo.read_range(read):
                pieces[ref.id] = open_block(ref, stored)
        assert b"".join(pieces[ref.id] for ref in entry.blocks) == files[entry.path]


def test_a_push_of_nothing_new_uploads_no_pack(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(500_000))
    store = LocalStore(tmp_path / "store")
    repo = Repository(store, open_keyring(store, tmp_path / "keys", None, create=True))
    push_directory(repo, src, "t/again", ["1.0.0"])
    again = push_directory(repo, src, "t/again", ["1.0.1"])
    assert again.stats.packs == 0 and again.stats.new_bytes == 0
    assert again.stats.blocks > 0
