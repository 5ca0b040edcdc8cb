"""The benchmark scripts, run end to end on tiny sizes so they cannot rot (not timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from aetherfs.core.blocks import seal_block
from benchmarks.blocks import Chunker, delta, stored_size
from benchmarks.datasets import changed_files, make_files_pair, make_sqlite_pair, tree_size
from benchmarks.proxy import CountingProxy
from benchmarks.record_pairs import MAKERS
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS

ROOT = Path(__file__).resolve().parents[2]
TINY: list[str | Path] = [
    "--rows", "5000", "--total-mib", "4", "--files", "12", "--record-mib", "2"
]  # fmt: skip
RECORD_PAIRS = {"npy", "lmdb", "sqlite-rebuilt", "parquet"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results directory for the three scripts, so the report test can read them all."""
    return tmp_path_factory.mktemp("results")


def script(name: str, *args: str | Path, timeout: int = 120) -> str:
    env = dict(os.environ) | CREDENTIALS | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_pairs_are_deterministic_and_change_what_they_say(tmp_path: Path) -> None:
    a = make_files_pair(tmp_path / "a", total=2 << 20, files=20)
    b = make_files_pair(tmp_path / "b", total=2 << 20, files=20)
    assert changed_files(a.v1, b.v1) == [] and changed_files(a.v2, b.v2) == []
    changed = changed_files(a.v1, a.v2)
    # 2% of 20 files rounds to one rewritten file, plus the log.
    assert "logs/app.log" in changed and len(changed) == 2
    assert (a.v2 / "logs/app.log").read_bytes().startswith((a.v1 / "logs/app.log").read_bytes())

    s = make_sqlite_pair(tmp_path / "s", rows=3000)
    t = make_sqlite_pair(tmp_path / "t", rows=3000)
    assert (s.v1 / "places.sqlite").read_bytes() == (t.v1 / "places.sqlite").read_bytes()
    assert (s.v2 / "places.sqlite").read_bytes() == (t.v2 / "places.sqlite").read_bytes()
    assert tree_size(s.v2) >= tree_size(s.v1)


def test_record_pairs_are_deterministic_and_change_records_only(tmp_path: Path) -> None:
    size = 1 << 20
    for name, make in MAKERS.items():
        a, b = make(tmp_path / f"{name}-a", size), make(tmp_path / f"{name}-b", size)
        assert changed_files(a.v1, b.v1) == [] and changed_files(a.v2, b.v2) == [], name
        changed = changed_files(a.v1, a.v2)
        assert changed, name
        assert tree_size(a.v1) >= size // 2, name
    npy = tmp_path / "npy-a"
    old = (npy / "v1" / "embeddings.npy").read_bytes()
    new = (npy / "v2" / "embeddings.npy").read_bytes()
    assert len(old) == len(new)  # rewritten in place: same shape, no shift
    rows = [i for i in range(128, len(old), 384) if old[i : i + 384] != new[i : i + 384]]
    assert len(rows) == max(1, (len(old) - 128) // 384 // 100)
    parquet = changed_files(tmp_path / "parquet-a" / "v1", tmp_path / "parquet-a" / "v2")
    assert len(parquet) == 2 and "part=20/data.parquet" in parquet


def test_stored_size_matches_aetherfs_sealing() -> None:
    for data in (b"", b"x" * 100_000, os.urandom(70_000), b"abc\n" * 9999 + os.urandom(9)):
        assert stored_size(data) == len(seal_block(data, b"k" * 32).stored)


def test_block_accounting_finds_only_the_edited_blocks(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    body = os.urandom(1 << 20)
    (v1 / "f").write_bytes(body)
    (v2 / "f").write_bytes(body[:500_000] + b"inserted" + body[500_000:])
    fixed = delta(v1, v2, Chunker.fixed_size(64 << 10))
    cdc = delta(v1, v2, Chunker.cdc(16 << 10, 64 << 10, 256 << 10))
    # An insert shifts every later fixed block; content-defined cuts resynchronise.
    assert fixed.new_blocks >= 8
    assert 1 <= cdc.new_blocks <= 3
    assert cdc.push_puts_packed == 1 and cdc.pull_gets_packed == 1


@pytest.mark.s3
def test_proxy_counts_requests_and_bytes(seaweedfs: SeaweedFS) -> None:
    with CountingProxy(seaweedfs.endpoint) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint, region_name="us-east-1")
        client.put_object(Bucket=seaweedfs.bucket, Key="smoke/a", Body=b"a" * 3000)
        assert client.get_object(Bucket=seaweedfs.bucket, Key="smoke/a")["Body"].read()
        client.head_object(Bucket=seaweedfs.bucket, Key="smoke/a")
        client.list_objects_v2(Bucket=seaweedfs.bucket, Prefix="smoke/")
        seen = proxy.snapshot()
    assert seen.requests == {"PUT": 1, "GET": 1, "HEAD": 1, "LIST": 1}
    assert seen.up >= 3000 and seen.down >= 3000


def test_chunk_sweep_script(tmp_path: Path, results: Path) -> None:
    script("chunk_sweep", "--work", tmp_path / "work", "--out", results, *TINY)
    report = json.loads((results / "chunk_sweep.json").read_text())
    assert set(report["pairs"]) == {"sqlite", "files", "sqlite+index"} | RECORD_PAIRS
    assert len(report["pairs"]["sqlite"]["results"]) == 7  # 4 FastCDC, 3 page sizes
    assert "## Summary" in (results / "chunk_sweep.md").read_text()


@pytest.mark.s3
def test_compare_script(tmp_path: Path, results: Path, seaweedfs: SeaweedFS) -> None:
    args: list[str | Path] = ["--work", tmp_path / "work", "--out", results, *TINY]
    script("compare", *args, "--s3-endpoint", seaweedfs.endpoint)
    report = json.loads((results / "compare.json").read_text())
    assert set(report["pairs"]) == {"sqlite", "files"} | RECORD_PAIRS
    for pair in ("sqlite", "files", *sorted(RECORD_PAIRS)):
        tools = {r["tool"]: r for r in report["pairs"][pair]["results"]}
        assert set(tools) == {
            "AetherFS", "rsync", "fixed 64 KiB blocks", "fixed 1 MiB blocks", "casync", "rclone",
            "s5cmd"
        }  # fmt: skip
        # rsync counts both directions of its delta protocol: never nothing.
        assert 0 < tools["rsync"]["pull"]["bytes"] <= tools["rsync"]["first_pull"]["bytes"]
        ours = tools["AetherFS"]
        assert ours["push"]["bytes"] > 0 and ours["pull"]["bytes"] > 0
        if pair == "files":  # too small a database for a delta below one block
            assert ours["push"]["bytes"] < ours["first_push"]["bytes"] / 3
            assert ours["pull"]["bytes"] < ours["first_pull"]["bytes"] / 3
        assert ours["push"]["requests"].get("PUT", 0) > 0
        for tool in ("rclone", "s5cmd"):  # whole files: at least the changed files move
            assert tools[tool]["pull"]["bytes"] > 0
    assert "| AetherFS |" in (results / "compare.md").read_text()


@pytest.mark.s3
def test_throughput_script(tmp_path: Path, results: Path, seaweedfs: SeaweedFS) -> None:
    args: list[str | Path] = ["--work", tmp_path / "work", "--out", results]
    args += ["--total-mib", "6", "--small-mib", "2", "--huge-mib", "12", "--files", "10"]
    args += ["--repeat", "1"]
    script("throughput", *args, "--s3-endpoint", seaweedfs.endpoint)
    report = json.loads((results / "throughput.json").read_text())
    names = [m["what"] for m in report["measures"]]
    assert names[2:6] == [
        "push, local store",
        "pull, local store",
        "push, SeaweedFS",
        "pull, SeaweedFS",
    ]
    assert names[6].startswith("rclone copy up")
    one_file = [m for one in report["one_file"] for m in one["runs"]]
    one_a, one_b = (one["bytes"] for one in report["one_file"])
    assert report["bytes"] == one_a < one_b == report["huge_bytes"]  # the same bytes as one file
    for m in report["measures"][2:] + report["small"] + report["huge"] + one_file:
        assert m["mb_per_s"] > 0 and m["max_rss"] > 10 << 20


@pytest.mark.s3
def test_fresh_pull_script(tmp_path: Path, results: Path, seaweedfs: SeaweedFS) -> None:
    args: list[str | Path] = ["--work", tmp_path / "work", "--out", results]
    args += ["--total-mib", "4", "--files", "6", "--repeat", "1"]
    script("fresh_pull", *args, "--s3-endpoint", seaweedfs.endpoint)
    report = json.loads((results / "fresh_pull.json").read_text())
    for run in (report["pull"], report["s5cmd"]):
        assert run["seconds"] > 0 and run["cpu_seconds"] > 0 and run["max_rss"] > 1 << 20
    stages = report["profile"]["stages"]
    for stage in ("ranged GET and read", "decrypt (XChaCha20-Poly1305)", "file writes (pwrite)"):
        assert stages[stage] > 0, stages
    assert "cache writes" not in stages  # a CLI pull keeps no block cache by default
    assert "CPU s per GiB" in (results / "fresh_pull.md").read_text()


def test_report_checks_the_goals_against_the_results(tmp_path: Path, results: Path) -> None:
    """Runs last: the three scripts above wrote `results`."""
    script("report", "--results", results, "--out", tmp_path / "benchmarks.md")
    page = (tmp_path / "benchmarks.md").read_text()
    for goal in ("fewer bytes than casync", "5x fewer bytes than rclone", "single-core limit"):
        assert goal in page
    assert "memory flat in the size of the data" in page
    assert "### files" in page and "### sqlite" in page
    assert "## A fresh pull next to s5cmd" in page
