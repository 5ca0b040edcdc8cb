"""A pulled DIR holds exactly the dataset; what pull remembers of it lives under XDG_STATE_HOME.

Real CLI processes on the embedded local store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from aetherfs.config import Settings
from tests.cli.test_pull_fast import edit_middle, inodes, make_dataset, pull_json, setup_v1_v2
from tests.cli.test_push_pull import tree
from tests.conftest import Cli

LEGACY_MARKER = ".aetherfs-pulled.json"


def records(cli: Cli) -> list[Path]:
    pulls = Settings.from_env(cli.env).state_dir / "pulls"
    return sorted(pulls.iterdir()) if pulls.exists() else []


@pytest.fixture
def state_cli(cli: Cli) -> Cli:
    cli.env["XDG_STATE_HOME"] = str(cli.home / "state")
    return cli


def diff_r(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True)


def test_a_pulled_directory_is_exactly_the_dataset(state_cli: Cli, tmp_path: Path) -> None:
    cli = state_cli
    src = tmp_path / "src"
    make_dataset(src)
    cli("push", str(src), "geo:1.0.0")
    out = tmp_path / "out"
    cli("pull", "geo:1.0.0", str(out))
    assert diff_r(src, out).returncode == 0, diff_r(src, out).stdout
    assert sorted(os.listdir(out)) == sorted(os.listdir(src))
    (record,) = records(cli)  # remembered outside DIR, where XDG_STATE_HOME says
    assert record.is_relative_to(cli.home / "state" / "aetherfs" / "pulls")
    edit_middle(src / "big.bin")
    cli("push", str(src), "geo:2.0.0")
    pulled = pull_json(cli, "geo:2.0.0", out)  # no --force: DIR is known to be ours
    assert pulled["linked_files"] == 6
    assert diff_r(src, out).returncode == 0, diff_r(src, out).stdout
    assert len(records(cli)) == 1  # the old tree's record went with it


def test_a_tree_pulled_with_a_marker_is_recognised_once_and_the_marker_removed(
    state_cli: Cli, tmp_path: Path
) -> None:
    cli = state_cli
    src, out, before = setup_v1_v2(cli, tmp_path)
    # What earlier pulls left: the same record, inside DIR, and nothing under the state dir.
    (record,) = records(cli)
    head, _, lists = record.read_bytes().partition(b"\n")
    doc = json.loads(head)
    legacy = {k: doc[k] for k in ("dataset", "manifest", "time", "files", "v")}
    (out / LEGACY_MARKER).write_bytes(json.dumps(legacy).encode() + b"\n" + lists)
    record.unlink()
    pulled = pull_json(cli, "geo:2.0.0", out)  # no --force needed: the marker vouches
    assert pulled["linked_files"] == 6
    assert inodes(out)["data/keep1.bin"] == before["data/keep1.bin"]
    assert not (out / LEGACY_MARKER).exists()
    assert diff_r(src, out).returncode == 0
    assert len(records(cli)) == 1


@pytest.mark.parametrize("change", ["replaced", "moved"])
def test_a_replaced_or_moved_directory_is_not_vouched_for(
    state_cli: Cli, tmp_path: Path, change: str
) -> None:
    cli = state_cli
    src, out, _ = setup_v1_v2(cli, tmp_path)
    if change == "replaced":
        # A new directory at the same path holding the very same inodes (every file's stat
        # still matches): only DIR itself differs.
        fresh = tmp_path / "fresh"
        shutil.copytree(out, fresh, symlinks=True, copy_function=os.link)
        shutil.rmtree(out)
        fresh.rename(out)
        target = out
    else:
        target = tmp_path / "elsewhere"
        out.rename(target)
    refused = cli("pull", "geo:2.0.0", str(target), check=False)
    assert refused.code == 2 and "--force" in refused.err, refused.err
    pulled = pull_json(cli, "geo:2.0.0", target, "--force", "--no-cache")
    assert pulled["linked_files"] == 0  # nothing trusted without reading it
    assert tree(target) == tree(src)
