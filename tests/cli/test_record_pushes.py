"""An embedding matrix with 1% of its rows rewritten in place: push and pull move those rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aetherfs.core.chunking import ChunkParams
from aetherfs.ops.cutter import Cutter
from tests.conftest import Cli


def test_rows_rewritten_in_place_cost_their_blocks_only(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rows = 40_000  # 15 MiB of 384-byte rows
    matrix = np.random.default_rng(3).standard_normal((rows, 96), dtype=np.float32)
    np.save(src / "embeddings.npy", matrix)
    cli("push", str(src), "emb:1.0.0")
    out = tmp_path / "out"
    cli("pull", "emb:1.0.0", str(out))

    changed = np.random.default_rng(4).choice(rows, size=rows // 100, replace=False)
    matrix[changed] = 1.0
    np.save(src / "embeddings.npy", matrix)
    pushed = json.loads(cli("push", str(src), "emb:1.1.0", "--json").out)
    size = (src / "embeddings.npy").stat().st_size
    # 400 rows in blocks of 10 rows: at most 400 blocks of 3.8 KiB, not most of the file
    # (64 KiB content-defined blocks would each hold about 1.7 changed rows: 80% of them new).
    assert pushed["new_bytes"] <= 400 * 3840 * 1.01 < size / 9
    # The delta names the file's blocks as edits of v1's list: about 156 bytes per changed
    # block, not 144 for each of its 4,000.
    stored = cli.home / "data" / "aetherfs" / "store" / "manifests" / pushed["manifest"]
    assert stored.stat().st_size < 400 * 156 * 1.1 + 4096
    pulled = json.loads(cli("pull", "emb:1.1.0", str(out), "--json").out)
    assert np.array_equal(np.load(out / "embeddings.npy"), matrix)
    assert pulled["bytes_by_source"].get("store", 0) <= 400 * 3840 * 1.01


def test_the_chunking_process_cuts_an_array_on_its_rows(tmp_path: Path) -> None:
    """Large pushes cut in a child process: it must choose and report the same chunking."""
    path = tmp_path / "m.npy"
    np.save(path, np.zeros((1000, 96), np.float32))
    with Cutter([path], ChunkParams()) as cutter:
        params, runs = cutter.next_file()
        lengths = [n for run in runs for n in run]
    assert params == ChunkParams.records(128, 3840)
    assert lengths[0] == 128 and set(lengths[1:]) == {3840} and sum(lengths) == path.stat().st_size
