"""The rollout benchmark run end to end at a tiny size (3 hosts, 8 MiB), so it cannot rot; and the
torrent writer checked against aria2's own reading of its torrents."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.torrent import bencode, make_torrent

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["t1", "s5cmd", "aria2-seeded", "aria2-webseed", "aetherfs", "delta"]


def test_torrent_info_hash_and_web_seed_are_what_aria2_reads(tmp_path: Path) -> None:
    tree = tmp_path / "v1"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(os.urandom(40_000))
    (tree / "sub" / "b.txt").write_bytes(b"x" * 30_000)
    t = make_torrent(tree, "v1", 16 * 1024, ["http://10.0.0.1:8333/bucket/plain/"])
    assert t.pieces == 5 and t.total == 70_000  # ceil(70000 / 16384)
    path = tmp_path / "v1.torrent"
    path.write_bytes(t.metainfo)
    shown = subprocess.run(["aria2c", "-S", str(path)], capture_output=True, text=True, check=True)
    assert f"Info Hash: {t.info_hash}" in shown.stdout
    assert "http://10.0.0.1:8333/bucket/plain/" in shown.stdout  # the BEP 19 web seed
    assert "./v1/sub/b.txt" in shown.stdout and "Mode: multi" in shown.stdout
    # The pieces run across file boundaries: piece 2 holds the end of a.bin and b.txt's start.
    joined = (tree / "a.bin").read_bytes() + (tree / "sub" / "b.txt").read_bytes()
    assert hashlib.sha1(joined[32768:49152]).digest() in t.metainfo


def test_bencode_sorts_keys_and_refuses_booleans() -> None:
    assert bencode({"b": 1, "a": [b"x", "yz"]}) == b"d1:al1:x2:yze1:bi1ee"
    with pytest.raises(TypeError):
        bencode(True)


@pytest.mark.slow
def test_rollout_benchmark_runs_every_tool_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.rollout", "--work", str(tmp_path / "work"),
            "--out", str(out), "--hosts", "3", "--mib", "8", "--files", "20", "--rate", "1gbit",
            "--memory-mib", "4",
        ],
        cwd=ROOT,
        env=dict(os.environ) | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "rollout.json").read_text())
    rows = doc["rows"]
    assert list(rows) == TOOLS
    dataset = doc["published"]["dataset_bytes"]
    assert dataset >= 8 << 20
    for tool in TOOLS:
        row = rows[tool]
        assert row["hosts"] == (1 if tool == "t1" else 3), tool
        assert 0 < row["seconds"]["first"] <= row["seconds"]["median"] <= row["seconds"]["last"]
        assert row["cpu_seconds_by_role"]["seaweedfs"]["processes"] == 1
    # Every s5cmd host copies every byte from the store, and the store's counter sees it.
    assert 3 <= rows["s5cmd"]["store_sent_vs_dataset"] < 3.3
    # One agent alone reads v1's stored blocks once (and a little more: manifest, headers).
    assert 0.99 <= rows["t1"]["store_sent_vs_new_bytes"] < 1.2
    assert rows["t1"]["peak_rss_bytes"]["max"] > 20 << 20
    # The delta moves far less than the full version, whoever serves it.
    assert rows["delta"]["store_sent_bytes"] < rows["aetherfs"]["store_sent_bytes"] / 5
    assert rows["aria2-seeded"]["cpu_seconds_by_role"]["seeder"]["processes"] == 1
    assert {g["goal"].split(" (")[0] for g in doc["goals"]} >= {
        "store egress at most 1.05 x the new bytes",
        "the last agent live within 1.25 x T1",
    }
    memory = doc["memory"]
    assert memory["dataset_bytes"] >= 4 << 20 and memory["peak_rss_bytes"] > 20 << 20
    md = (out / "rollout.md").read_text()
    assert "| aria2-webseed |" in md and "Goals:" in md
    assert "shared" in doc["cpu_note"]
