"""An SQLite file rewritten from scratch is cut by content; one updated in place, by page."""

from __future__ import annotations

import json
from pathlib import Path

from aetherfs.core.blocks import REBUILT_LEVEL, open_block, seal_block
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import ManifestId
from aetherfs.ops.cutter import Cutter
from aetherfs.ops.rebuilt import sample_indices
from benchmarks.datasets import make_sqlite_pair
from benchmarks.record_pairs import make_sqlite_rebuilt_pair
from tests.conftest import Cli
from tests.ops.test_faults import repository

MiB = 1 << 20


def chunking(cli: Cli, ref: str, path: str) -> list[int | str] | None:
    files = json.loads(cli("inspect", ref, "--json").out)["files"]
    return next(f for f in files if f["path"] == path).get("chunking")


def json_of(cli: Cli, ref: str) -> str:
    return str(json.loads(cli("inspect", ref, "--json").out)["manifest"])


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


def test_a_rebuilt_file_is_compressed_harder_and_reads_back(cli: Cli, tmp_path: Path) -> None:
    """Level 6 where a file shares nothing with the base: fewer bytes, the same plaintext."""
    pair = make_sqlite_rebuilt_pair(tmp_path / "pair", 4 * MiB)
    push(cli, pair.v1, "places:1.0.0")
    harder = push(cli, pair.v2, "places:1.1.0")["new_bytes"]
    again = tmp_path / "again"  # the same v2 pushed fresh: no base, so pages at level 1
    plain = push(cli, pair.v2, "fresh:1.0.0")["new_bytes"]
    assert harder < plain
    # Its blocks are what sealing at REBUILT_LEVEL makes of their plaintext.
    repo = repository(cli)
    manifest = repo.get_manifest("places", ManifestId.from_hex(json_of(cli, "places:1.1.0")))
    ref = next(r for e in manifest.files for r in e.blocks)
    plaintext = open_block(ref, repo.get_blocks("places", [ref])[ref.id])
    secret = repo.keyring.convergence_secret
    assert seal_block(plaintext, secret, REBUILT_LEVEL).ref.id == ref.id
    # The manifest pins that level, so a peer serving the file from its tree seals it again
    # to these very bytes; a file at the default level names none.
    assert [e.level for e in manifest.files] == [REBUILT_LEVEL]
    fresh = repo.get_manifest("fresh", ManifestId.from_hex(json_of(cli, "fresh:1.0.0")))
    assert [e.level for e in fresh.files] == [None]
    cli("pull", "places:1.1.0", str(again))
    assert (again / "places.sqlite").read_bytes() == (pair.v2 / "places.sqlite").read_bytes()


def test_sealing_at_a_level_is_deterministic_and_opens() -> None:
    data = b"row, row, row your boat; " * 4000
    one, six = seal_block(data, bytes(32)), seal_block(data, bytes(32), REBUILT_LEVEL)
    assert six == seal_block(data, bytes(32), REBUILT_LEVEL)  # convergent at any level
    assert one.ref.id != six.ref.id and open_block(six.ref, six.stored) == data
