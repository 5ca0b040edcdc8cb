"""The swarm's store reader reads a piece from its table alone and forgets a version once its
fetch ends: the agent holds no per-block object for it, and none across rollouts."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from aetherfs.agent.peers import RepoStore
from aetherfs.core.blocks import open_block
from aetherfs.errors import NotFound
from aetherfs.ops.push import push_directory
from aetherfs.planner import PieceTable
from aetherfs.repository import StoreRepository, open_keyring
from aetherfs.store.local import LocalStore


def test_pieces_read_from_the_table_open_and_a_forgotten_version_is_refused(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(3).randbytes(9_000_000)  # three pieces or so
    (src / "a.bin").write_bytes(data)
    store = LocalStore(tmp_path / "store")
    repo = StoreRepository(store, open_keyring(store, tmp_path / "keys", None, create=True))
    pushed = push_directory(repo, src, "t/pieces", ["1.0.0"])
    manifest = repo.get_manifest("t/pieces", pushed.manifest_id)
    table = PieceTable.of_manifest(pushed.manifest_id, manifest)
    reader = RepoStore(None, threading.Event())
    reader.want(table, repo, "t/pieces")

    stored = {}
    for index in range(len(table)):
        got = reader.read_piece(table, index)
        assert [block_id for block_id, _ in got] == [b.id for b in table.blocks(index)]
        stored.update(got)
    refs = manifest.files[0].blocks
    assert b"".join(open_block(ref, stored[ref.id]) for ref in refs) == data

    reader.forget(table)
    with pytest.raises(NotFound, match="not one this agent fetches"):
        reader.read_piece(table, 0)
