"""An SQLite file rewritten from scratch is cut by content; one updated in place, by page."""

from __future__ import annotations

import json
from pathlib import Path

from aetherfs.core.chunking import ChunkParams
from aetherfs.ops.cutter import Cutter
from aetherfs.ops.rebuilt import sample_indices
from benchmarks.datasets import make_sqlite_pair
from benchmarks.record_pairs import make_sqlite_rebuilt_pair
from tests.conftest import Cli

MiB = 1 << 20


def chunking(cli: Cli, ref: str, path: str) -> list[int | str] | None:
    files = json.loads(cli("inspect", ref, "--json").out)["files"]
    return next(f for f in files if f["path"] == path).get("chunking")


def push(cli: Cli, src: Path, ref: str) -> dict[str, int]:
    return json.loads(cli("push", str(src), ref, "--json").out)  # type: ignore[no-any-return]


def test_a_rebuilt_database_leaves_its_pages_for_content_defined_blocks(
    cli: Cli, tmp_path: Path
) -> None:
    pair = make_sqlite_rebuilt_pair(tmp_path / "pair", 6 * MiB)
    push(cli, pair.v1, "places:1.0.0")
    assert chunking(cli, "places:1.0.0", "places.sqlite") == [4096, 4096, 4096, "fixed"]
    pushed = push(cli, pair.v2, "places:1.1.0")
    assert chunking(cli, "places:1.1.0", "places.sqlite") is None  # the default: FastCDC
    size = (pair.v2 / "places.sqlite").stat().st_size
    assert pushed["new_bytes"] < size  # compressed; nothing of v1 survived to reuse
    out = tmp_path / "out"
    cli("pull", "places:1.1.0", str(out))
    assert (out / "places.sqlite").read_bytes() == (pair.v2 / "places.sqlite").read_bytes()


def test_a_database_updated_in_place_stays_cut_on_its_pages(cli: Cli, tmp_path: Path) -> None:
    pair = make_sqlite_pair(tmp_path / "pair", rows=40_000)
    push(cli, pair.v1, "places:1.0.0")
    pushed = push(cli, pair.v2, "places:1.1.0")
    assert chunking(cli, "places:1.1.0", "places.sqlite") == [4096, 4096, 4096, "fixed"]
    assert pushed["new_bytes"] < (pair.v2 / "places.sqlite").stat().st_size / 4


def test_samples_start_with_the_first_pages_and_spread_over_the_rest() -> None:
    assert sample_indices(10) == list(range(10))
    picked = sample_indices(100_000, 512)
    assert len(picked) == len(set(picked)) == 512
    assert picked[:128] == list(range(128)) and picked[-1] > 99_000


def test_the_chunking_process_cuts_an_exact_file_as_told(tmp_path: Path) -> None:
    """Large pushes cut in a child process: a rebuilt file's default chunking must hold there."""
    pair = make_sqlite_rebuilt_pair(tmp_path / "pair", 1 * MiB)
    path = pair.v2 / "places.sqlite"
    with Cutter([path], ChunkParams(), exact=frozenset({path})) as cutter:
        exact, runs = cutter.next_file()
        lengths = [n for run in runs for n in run]
    assert exact == ChunkParams() and sum(lengths) == path.stat().st_size
    assert len(set(lengths)) > 1  # content-defined, not pages
