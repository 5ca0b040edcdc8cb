"""A push cut off (kill -9, a store outage) and tried again uploads only what is missing, and gc
running meanwhile never takes a pack the push will name. Real processes, real SeaweedFS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aetherfs.core.ids import PackId
from aetherfs.ops.push_journal import JournalEntry, read_entries
from aetherfs.store import layout
from tests.cli.test_push_pull import tree
from tests.conftest import Cli
from tests.fixtures.ports import free_port
from tests.fixtures.seaweedfs import SeaweedFS, run_seaweedfs
from tests.ops.test_faults import kill_when, repository
from tests.ops.test_push_lease import orphan

MiB = 1024 * 1024
ONE_WORKER = ("--workers", "1")  # slower: the kill lands half-way
PARTS = 3  # of 32 MiB: six packs of 16 MiB


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    for i in range(PARTS):
        (root / f"part{i}.bin").write_bytes(os.urandom(32 * MiB))
    (root / "sub" / "small.txt").write_text("a small file beside the big ones\n")
    return root


def journaled(cli: Cli) -> list[JournalEntry]:
    """The entries of the push journal of `geo`, as a retry would read them."""
    found = list((cli.home / ".local" / "state" / "aetherfs" / "pushes").glob("*/geo.journal"))
    if not found:
        return []
    with found[0].open("rb") as f:
        return read_entries(f)[0]


def start_push(cli: Cli, src: Path, ref: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "push", str(src), ref, "--json", *ONE_WORKER],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def push_json(cli: Cli, src: Path, *args: str) -> dict[str, Any]:
    return json.loads(cli("push", str(src), "geo:1.0.0", "--json", *args).out)  # type: ignore[no-any-return]


def clean_new_bytes(cli: Cli, src: Path, tmp_path: Path) -> int:
    """What one uninterrupted push of `src` uploads (to a fresh local store)."""
    fresh = (tmp_path / "clean-store").as_uri()
    return int(push_json(cli, src, "--store", fresh)["new_bytes"])


def assert_pulls_as(cli: Cli, src: Path, out: Path) -> None:
    cli("pull", "geo:1.0.0", str(out), "--no-cache")
    assert tree(out) == tree(src)


def kill_mid_push_and_retry(cli: Cli, src: Path, tmp_path: Path) -> None:
    proc = start_push(cli, src, "geo:1.0.0")
    kill_when(proc, lambda: len(journaled(cli)) >= 2)
    before = journaled(cli)
    assert 2 <= len(before) < 6, "the push was not killed half-way"
    tags = json.loads(cli("tags", "geo", "--json", check=False).out or "{}")
    assert "1.0.0" not in tags

    again = push_json(cli, src)
    assert again["resumed_packs"] == len(before)
    assert again["resumed_bytes"] == sum(entry.size for entry in before)
    # Only what is missing went up: with what was resumed, exactly one clean push's bytes.
    assert again["new_bytes"] + again["resumed_bytes"] == clean_new_bytes(cli, src, tmp_path)
    assert journaled(cli) == []  # published: the journal is gone
    assert_pulls_as(cli, src, tmp_path / "out")


@pytest.mark.slow
def test_kill_9_mid_push_on_the_local_store_then_retry(cli: Cli, src: Path, tmp_path: Path) -> None:
    kill_mid_push_and_retry(cli, src, tmp_path)


@pytest.mark.slow
def test_kill_9_mid_push_on_seaweedfs_then_retry(
    cli: Cli, src: Path, tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    cli.env["AETHERFS_STORE"] = seaweedfs.store_url()
    cli.env["AETHERFS_S3_ENDPOINT"] = seaweedfs.endpoint
    kill_mid_push_and_retry(cli, src, tmp_path)


@pytest.mark.slow
def test_a_journaled_pack_no_longer_on_the_store_is_uploaded_again(
    cli: Cli, src: Path, tmp_path: Path
) -> None:
    proc = start_push(cli, src, "geo:1.0.0")
    kill_when(proc, lambda: len(journaled(cli)) >= 2)
    before = journaled(cli)
    # gc with no grace: the dead push's lease is still fresh, so its packs stay.
    swept = json.loads(cli("gc", "--grace", "0", "--json").out)
    assert swept["pushes_in_progress"] == 1
    assert not {e.pack.hex() for e in before} & set(swept["removed_packs"])
    lost = before[0].pack
    repository(cli).store.delete(layout.pack_key(lost))  # as a store reset would

    again = push_json(cli, src)
    assert again["resumed_packs"] == len(before) - 1
    assert again["resumed_bytes"] == sum(e.size for e in before[1:])
    assert again["new_bytes"] + again["resumed_bytes"] == clean_new_bytes(cli, src, tmp_path)
    assert_pulls_as(cli, src, tmp_path / "out")


@pytest.mark.slow
def test_a_store_outage_mid_push_then_retry(cli: Cli, src: Path, tmp_path: Path) -> None:
    data = tmp_path / "weed"
    data.mkdir()
    ports = (free_port(), free_port(), free_port(), free_port())
    with run_seaweedfs(data, ports) as server:
        cli.env["AETHERFS_STORE"] = server.store_url()
        cli.env["AETHERFS_S3_ENDPOINT"] = server.endpoint
        proc = start_push(cli, src, "geo:1.0.0")
        kill_when(server.process, lambda: len(journaled(cli)) >= 2)  # the store goes away
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 7, err
        assert "Traceback" not in err
    before = journaled(cli)
    assert 2 <= len(before) < 6
    with run_seaweedfs(data, ports):  # back, with what it held
        again = push_json(cli, src)
        assert again["resumed_packs"] == len(before)
        assert again["new_bytes"] + again["resumed_bytes"] == clean_new_bytes(cli, src, tmp_path)
        assert_pulls_as(cli, src, tmp_path / "out")


@pytest.mark.slow
def test_gc_while_a_push_is_paused_takes_none_of_its_packs(
    cli: Cli, src: Path, tmp_path: Path
) -> None:
    cli("push", str(src / "sub"), "geo:0.1.0")  # a store with a version already
    proc = start_push(cli, src, "geo:1.0.0")
    try:
        while len(journaled(cli)) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.005)
        proc.send_signal(signal.SIGSTOP)  # packs uploaded, no manifest names them yet
        uploaded = {e.pack.hex() for e in journaled(cli)}
        loose: PackId = orphan(repository(cli))
        swept = json.loads(cli("gc", "--grace", "0", "--json").out)
        assert swept["removed_packs"] == [loose.hex()]  # real garbage still goes
        assert swept["pushes_in_progress"] == 1 and swept["held_packs"] >= len(uploaded)
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out)["packs"] >= 4
    assert_pulls_as(cli, src, tmp_path / "out")
    # Published: the lease is gone and gc now finds nothing to take.
    swept = json.loads(cli("gc", "--grace", "0", "--json").out)
    assert swept["removed_packs"] == [] and swept["pushes_in_progress"] == 0
    assert_pulls_as(cli, src, tmp_path / "again")
