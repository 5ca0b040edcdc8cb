"""Pulling a new version over a pulled one: unchanged files are linked, nothing unchecked trusted.

Real CLI processes on the embedded local store. The record a pull keeps of DIR (under the state
dir, not in DIR) vouches for a file only while its size, mtime and inode are what it recorded.
"""

from __future__ import annotations

import base64
import json
import os
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from aetherfs.config import Settings
from aetherfs.ops import reuse
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli

KEPT = [f"data/keep{i}.bin" for i in range(4)]


def make_dataset(root: Path) -> None:
    make_tree(root, big=2_000_000)
    rng = random.Random(7)
    (root / "data").mkdir()
    for rel in KEPT:
        (root / rel).write_bytes(rng.randbytes(400_000))


def edit_middle(path: Path) -> None:
    """Change 100 bytes in the middle of a file, keeping its size."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 100] = os.urandom(100)
    path.write_bytes(bytes(data))


def inodes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.lstat().st_ino
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def record_of(cli: Cli) -> Path:
    """The one record the CLI keeps of a pulled directory."""
    (record,) = (Settings.from_env(cli.env).state_dir / "pulls").iterdir()
    return record


def marker_parts(path: Path) -> tuple[dict[str, Any], bytes]:
    """A marker's JSON line and the block lists after it."""
    line, _, lists = path.read_bytes().partition(b"\n")
    doc: dict[str, Any] = json.loads(line)
    return doc, lists


def pull_json(cli: Cli, ref: str, out: Path, *extra: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(cli("pull", ref, str(out), "--json", *extra).out)
    return result


def setup_v1_v2(cli: Cli, tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    """v1 pulled into out/ (its inodes returned), v2 (big.bin edited) published."""
    src = tmp_path / "src"
    make_dataset(src)
    cli("push", str(src), "geo:1.0.0")
    out = tmp_path / "out"
    cli("pull", "geo:1.0.0", str(out))
    before = inodes(out)
    edit_middle(src / "big.bin")
    cli("push", str(src), "geo:2.0.0", "--json")
    return src, out, before


def test_v2_over_v1_links_unchanged_files_and_fetches_only_changed_blocks(
    cli: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_dataset(src)
    cli("push", str(src), "geo:1.0.0")
    out = tmp_path / "out"
    first = pull_json(cli, "geo:1.0.0", out)
    assert first["linked_files"] == 0
    marker, lists = marker_parts(record_of(cli))
    recorded = {f["path"]: f for f in marker["files"]}
    assert len(lists) == 40 * sum(f["blocks"][1] for f in marker["files"])
    st = (out / "big.bin").stat()
    assert recorded["big.bin"]["size"] == st.st_size
    assert recorded["big.bin"]["mtime_ns"] == st.st_mtime_ns
    assert recorded["big.bin"]["ino"] == st.st_ino
    before = inodes(out)

    # v2: 100 bytes of big.bin change, keep3 moves, a copy of keep0 appears at a new path.
    edit_middle(src / "big.bin")
    (src / "data/keep3.bin").rename(src / "data/moved.bin")
    (src / "data/copy.bin").write_bytes((src / "data/keep0.bin").read_bytes())
    second = json.loads(cli("push", str(src), "geo:2.0.0", "--json").out)
    pulled = pull_json(cli, "geo:2.0.0", out, "--no-cache")
    assert tree(out) == tree(src)

    after = inodes(out)
    linked = ["data/keep0.bin", "data/keep1.bin", "data/keep2.bin", "sub/table.csv", "run.sh"]
    for rel in linked:
        assert after[rel] == before[rel], rel
    assert after["data/moved.bin"] == before["data/keep3.bin"]  # a moved file is linked too
    assert after["data/copy.bin"] != after["data/keep0.bin"]  # never two paths on one inode
    assert after["big.bin"] != before["big.bin"]
    linked_bytes = sum((src / rel).stat().st_size for rel in [*linked, "data/moved.bin"])
    assert pulled["linked_files"] == 6
    assert pulled["linked_bytes"] == linked_bytes
    by_source = pulled["bytes_by_source"]
    assert isinstance(by_source, dict)
    assert by_source["linked"] == linked_bytes
    # Only big.bin's changed blocks come from the store; the rest of it is read locally, at the
    # offsets the record names; copy.bin's bytes come from keep0.bin.
    assert 0 < by_source["store"] <= second["new_bytes"] < 1_000_000
    assert by_source["local"] >= 1_000_000 + 400_000

    human = cli("pull", "geo:1.0.0", str(out)).out
    assert "linked  6 unchanged files" in human  # back: all but big.bin, keep3 from moved.bin
    assert inodes(out)["data/keep3.bin"] == before["data/keep3.bin"]


@pytest.mark.parametrize("change", ["same-size-edit", "replaced-same-size", "resized-old-mtime"])
def test_a_file_changed_after_the_pull_is_not_trusted(
    cli: Cli, tmp_path: Path, change: str
) -> None:
    src, out, before = setup_v1_v2(cli, tmp_path)
    victim = out / "data/keep1.bin"  # unchanged from v1 to v2: linked if trusted
    old = victim.stat()
    if change == "same-size-edit":
        # At once, so within the same file-time tick as the pull's writes if it were not fenced.
        edit_middle(victim)
    elif change == "replaced-same-size":
        other = out / "data/other.tmp"
        other.write_bytes(os.urandom(old.st_size))
        os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
        other.replace(victim)
    else:
        with victim.open("r+b") as f:
            f.seek(0)
            f.write(b"X" * 10)
            f.truncate(old.st_size - 1)
        os.utime(victim, ns=(old.st_atime_ns, old.st_mtime_ns))
    tampered = victim.stat().st_ino

    pulled = pull_json(cli, "geo:2.0.0", out)
    assert tree(out) == tree(src)  # bit-exact despite the tampering
    assert pulled["linked_files"] == 5  # keep0, keep2, keep3, table.csv, run.sh: not keep1
    assert victim.stat().st_ino != tampered
    assert inodes(out)["data/keep2.bin"] == before["data/keep2.bin"]


@pytest.mark.parametrize("damage", ["missing", "not-json", "bad-fingerprint", "no-files"])
def test_missing_or_corrupt_record_falls_back_to_chunking(
    cli: Cli, tmp_path: Path, damage: str
) -> None:
    src, out, before = setup_v1_v2(cli, tmp_path)
    marker = record_of(cli)
    doc, lists = marker_parts(marker)
    if damage == "missing":
        marker.unlink()
    elif damage == "not-json":
        marker.write_text("{not json")
    elif damage == "bad-fingerprint":
        doc["files"][0]["fingerprint"] = "!!"
        marker.write_bytes(json.dumps(doc).encode() + b"\n" + lists)
    else:
        marker.write_text(json.dumps({k: doc[k] for k in ("dataset", "manifest", "time")}))
    # Without a record DIR is no longer known to be ours: --force, as before.
    pulled = pull_json(cli, "geo:2.0.0", out, "--no-cache", "--force")
    assert tree(out) == tree(src)
    assert pulled["linked_files"] == 0
    by_source = pulled["bytes_by_source"]
    assert isinstance(by_source, dict)
    assert "linked" not in by_source
    assert by_source["local"] > by_source["store"]  # the slow path still reuses DIR's bytes
    assert all(inodes(out)[rel] != ino for rel, ino in before.items())


def test_block_lists_cut_off_cost_reuse_not_correctness(cli: Cli, tmp_path: Path) -> None:
    """The JSON line intact, the block lists after it lost: files are still linked by their
    recorded fingerprint, and the changed file's unchanged chunks are fetched instead."""
    src, out, _ = setup_v1_v2(cli, tmp_path)
    doc, _ = marker_parts(record_of(cli))
    record_of(cli).write_bytes(json.dumps(doc).encode() + b"\n")
    pulled = pull_json(cli, "geo:2.0.0", out, "--no-cache")
    assert tree(out) == tree(src)
    assert pulled["linked_files"] == 6  # all but big.bin (changed) and the empty file
    assert pulled["bytes_by_source"]["store"] >= 2_000_000  # type: ignore[index]


def test_a_marker_of_the_previous_format_still_vouches(cli: Cli, tmp_path: Path) -> None:
    """Block lists inline as base64 digests and sizes, as pulls wrote them before."""
    src, out, _ = setup_v1_v2(cli, tmp_path)
    doc, _ = marker_parts(record_of(cli))
    records = reuse.read_marker(record_of(cli))
    for item in doc["files"]:
        pairs = list(records[item["path"]].blocks())
        item["digests"] = base64.b64encode(b"".join(d for d, _ in pairs)).decode()
        item["sizes"] = [size for _, size in pairs]
        del item["blocks"], item["fingerprint"]
    del doc["v"]
    record_of(cli).write_text(json.dumps(doc) + "\n")
    pulled = pull_json(cli, "geo:2.0.0", out, "--no-cache")
    assert tree(out) == tree(src)
    assert pulled["linked_files"] == 6
    assert pulled["bytes_by_source"]["local"] > pulled["bytes_by_source"]["store"]  # type: ignore[index]


def test_a_chmod_in_dir_keeps_the_bytes_trusted_but_is_not_linked(cli: Cli, tmp_path: Path) -> None:
    src, out, before = setup_v1_v2(cli, tmp_path)
    (out / "run.sh").chmod(0o700)  # a chmod leaves the mtime: linking would keep 0o700
    pulled = pull_json(cli, "geo:2.0.0", out, "--no-cache")
    assert tree(out) == tree(src)
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o755
    assert inodes(out)["run.sh"] != before["run.sh"]
    assert pulled["linked_files"] == 5
