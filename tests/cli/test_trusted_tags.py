"""Trusted tag state in real CLI processes: a replayed history is refused, damaged tags are
listed around and repaired, and concurrent processes lose no update of what they trust."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli

DATASET = "team/geo"


@pytest.fixture
def local(cli: Cli, tmp_path: Path) -> Cli:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    return cli


def tag_file(tmp_path: Path, tag: str) -> Path:
    return tmp_path / "store" / "tags" / DATASET / f"@{tag}"


def publish(cli: Cli, tmp_path: Path, version: str, *tags: str) -> str:
    src = tmp_path / f"src-{version}"
    src.mkdir()
    (src / "data.txt").write_text(f"version {version}\n")
    args = ["push", str(src), f"{DATASET}:{version}", "--json"]
    for tag in tags:
        args += ["--tag", tag]
    manifest: str = json.loads(cli(*args).out)["manifest"]
    return manifest


def test_replayed_history_is_refused_and_the_directory_kept(local: Cli, tmp_path: Path) -> None:
    publish(local, tmp_path, "1.0.0", "stable")
    old_history = tag_file(tmp_path, "stable").read_bytes()
    publish(local, tmp_path, "2.0.0", "stable")
    target = tmp_path / "live"
    local("pull", f"{DATASET}:stable", str(target))
    assert (target / "data.txt").read_text() == "version 2.0.0\n"

    tag_file(tmp_path, "stable").write_bytes(old_history)  # the store hands back seq 1
    refused = local("pull", f"{DATASET}:stable", str(target), check=False)
    assert refused.code == 5, refused.err
    assert "at seq 1" in refused.err and "seq 2" in refused.err
    assert "aetherfs trust reset --dataset team/geo" in refused.err
    assert len(refused.err.strip().splitlines()) == 1  # one line, no traceback
    assert (target / "data.txt").read_text() == "version 2.0.0\n"
    assert local("inspect", f"{DATASET}:stable", check=False).code == 5

    listed = local("tags", DATASET, "--history", check=False)
    assert listed.code == 5
    assert "stable" in listed.out  # still listed ...
    assert "ends at seq 1, but seq 2" in listed.err and "not whole" in listed.err  # ... but flagged

    # The store really was reset to that state: the user says so, and it is trusted from now on.
    reset = local("trust", "reset", "--dataset", DATASET)
    assert "forgot" in reset.out
    local("pull", f"{DATASET}:stable", str(target))
    assert (target / "data.txt").read_text() == "version 1.0.0\n"
    assert local("tags", DATASET, "--history").code == 0


def test_trusted_state_lives_under_xdg_state_home(local: Cli, tmp_path: Path) -> None:
    state = tmp_path / "state"
    local.env["XDG_STATE_HOME"] = str(state)
    manifest = publish(local, tmp_path, "1.0.0", "stable")
    local("pull", f"{DATASET}:stable", str(tmp_path / "live"))
    (file,) = (state / "aetherfs" / "trust").glob("*.json")
    doc = json.loads(file.read_text())
    assert doc["tags"][f"{DATASET}:stable"]["manifest"] == manifest
    shown = json.loads(local("trust", "show", "--json").out)
    assert shown[doc["store_id"]][f"{DATASET}:stable"]["seq"] == 1


def test_a_damaged_tag_is_named_the_others_listed_and_repaired(local: Cli, tmp_path: Path) -> None:
    publish(local, tmp_path, "1.0.0", "stable", "canary")
    v2 = publish(local, tmp_path, "2.0.0", "stable")
    local("pull", f"{DATASET}:stable", str(tmp_path / "live"))  # trusts stable at seq 2
    damaged = bytearray(tag_file(tmp_path, "stable").read_bytes())
    damaged[-5] ^= 0xFF  # inside the newest record: its signature no longer holds
    tag_file(tmp_path, "stable").write_bytes(bytes(damaged))

    listed = local("tags", DATASET, check=False)
    assert listed.code == 5
    for other in ("canary", "latest", "1.0.0", "2.0.0"):
        assert other in listed.out
    assert "stable" not in listed.out
    assert "team/geo:stable" in listed.err and "aetherfs tag --repair team/geo:stable" in listed.err
    assert local("tag", f"{DATASET}:canary", "beta").code == 0  # other tags still move

    repaired = json.loads(local("tag", "--repair", f"{DATASET}:stable", "--json").out)
    # The damaged record was seq 2, trusted here: the repair re-signs it above both.
    assert repaired["manifest"] == v2 and repaired["seq"] == 3 and repaired["kept"] == 1
    assert local("tags", DATASET).code == 0
    history = json.loads(local("tags", DATASET, "--history", "--json").out)["stable"]
    assert [r["seq"] for r in history] == [1, 3]
    local("pull", f"{DATASET}:stable", str(tmp_path / "live"))
    again = local("tag", "--repair", f"{DATASET}:stable")
    assert "nothing to repair" in again.out


def test_an_unreadable_tag_is_repaired_from_a_named_manifest(local: Cli, tmp_path: Path) -> None:
    v1 = publish(local, tmp_path, "1.0.0", "stable")
    tag_file(tmp_path, "stable").write_bytes(b"not a history")
    assert (
        "tag history is malformed: it is not readable msgpack"
        in local("tags", DATASET, check=False).err
    )
    refused = local("tag", "--repair", f"{DATASET}:stable", check=False)
    assert refused.code == 5 and "--manifest ID" in refused.err
    done = json.loads(local("tag", "--repair", f"{DATASET}:stable", "--manifest", v1, "--json").out)
    assert done["seq"] == 1 and done["manifest"] == v1
    assert local("tags", DATASET).code == 0


def test_v_prefixed_versions_are_refused_at_the_cli(local: Cli, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    result = local("push", str(tmp_path / "src"), f"{DATASET}:v1.0.0", check=False)
    assert result.code == 2 and "did you mean 1.0.0?" in result.err


WRITER = """
import sys
import time
from pathlib import Path
from aetherfs.core.ids import ManifestId
from aetherfs.core.tags import TagRecord
from aetherfs.trust import TrustStore

store = TrustStore(Path(sys.argv[1]))
while not Path(sys.argv[4]).exists():  # all start together
    time.sleep(0.005)
for seq in range(1, int(sys.argv[3]) + 1):
    store.accept("store-1", TagRecord("team/geo", sys.argv[2], ManifestId(bytes(32)), seq, 1.0,
                                      bytes(32)))
"""


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    from aetherfs.trust import TrustStore

    tags, rounds = [f"t{i}" for i in range(4)], 150
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "trust"), tag, str(rounds), str(go)]
        )
        for tag in tags
    ]
    time.sleep(1)  # let them all import and wait
    go.touch()
    assert [p.wait(60) for p in procs] == [0] * len(tags)
    state = TrustStore(tmp_path / "trust").load("store-1")
    assert {key: t.seq for key, t in state.items()} == {f"team/geo:{t}": rounds for t in tags}
    assert not list((tmp_path / "trust").glob(".*.tmp"))  # every write renamed into place
