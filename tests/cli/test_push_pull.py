"""The CLI end to end, in real processes, on the embedded local store and on SeaweedFS."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.fixtures.seaweedfs import SeaweedFS


def make_tree(root: Path, seed: int = 1, big: int = 3_000_000) -> None:
    rng = random.Random(seed)
    (root / "sub/deeper").mkdir(parents=True, exist_ok=True)
    (root / "big.bin").write_bytes(rng.randbytes(big))
    (root / "sub/table.csv").write_text("".join(f"{i},{rng.random()}\n" for i in range(50_000)))
    (root / "sub/deeper/empty").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("sub/table.csv")
    (root / "emptydir").mkdir(exist_ok=True)


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under root: kind, permission bits, content or link target."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_symlink():
            found[rel] = ("l", 0, os.readlink(path).encode())
        elif path.is_dir():
            found[rel] = ("d", stat.S_IMODE(st.st_mode), b"")
        else:
            found[rel] = ("f", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found


@pytest.fixture(params=["local", "s3"])
def store_cli(request: pytest.FixtureRequest, cli: Cli) -> Cli:
    if request.param == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        cli.env["AETHERFS_STORE"] = server.store_url()
        cli.env["AETHERFS_S3_ENDPOINT"] = server.endpoint
    return cli


def test_push_pull_round_trip_and_delta(store_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    first = json.loads(
        store_cli("push", str(src), "team/geo-db:1.0.0", "--tag", "stable", "--json").out
    )
    assert first["files"] == 4 and first["new_bytes"] > 0
    assert sorted(first["tags"]) == ["1.0.0", "latest", "stable"]

    out = tmp_path / "out"
    pulled = json.loads(store_cli("pull", "team/geo-db:stable", str(out), "--json").out)
    assert tree(out) == tree(src)
    assert pulled["bytes_by_source"]["store"] > 0

    # v2: append to the CSV only. Push uploads little; pull over v1 fetches little.
    with (src / "sub/table.csv").open("a") as f:
        f.write("new,row\n" * 100)
    second = json.loads(store_cli("push", str(src), "team/geo-db:1.1.0", "--json").out)
    assert second["new_bytes"] < first["new_bytes"] / 5
    diff = json.loads(store_cli("diff", "team/geo-db:1.0.0", "team/geo-db:1.1.0", "--json").out)
    assert [c["path"] for c in diff["changes"]] == ["sub/table.csv"]
    assert diff["bytes_to_fetch"] <= second["new_bytes"]

    again = json.loads(
        store_cli("pull", "team/geo-db:latest", str(out), "--no-cache", "--json").out
    )
    assert tree(out) == tree(src)
    assert again["bytes_by_source"].get("store", 0) <= second["new_bytes"]
    assert again["bytes_by_source"]["local"] > 0

    inspect = json.loads(store_cli("inspect", "team/geo-db:1.1.0", "--json").out)
    assert inspect["total_files"] == 4
    assert inspect["manifest"] == second["manifest"]


def test_tags_history_and_channels(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:2026.11.24")
    (src / "big.bin").write_bytes(b"changed")
    cli("push", str(src), "geo:2026.11.25")
    cli("tag", "geo:2026.11.24", "stable")
    cli("tag", "geo:2026.11.25", "stable")
    history = json.loads(cli("tags", "geo", "--history", "--json").out)
    assert [r["seq"] for r in history["stable"]] == [1, 2]
    assert [r["seq"] for r in history["latest"]] == [1, 2]
    assert history["stable"][1]["manifest"] == history["2026.11.25"][0]["manifest"]
    listing = json.loads(cli("ls", "--json").out)
    assert listing[0]["dataset"] == "geo"
    assert "stable" in listing[0]["tags"]
    assert "geo" in cli("ls").out


def test_repointing_a_version_tag_is_refused(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:1.0.0")
    (src / "big.bin").write_bytes(b"other")
    cli("push", str(src), "geo:1.0.1")
    result = cli("tag", "geo:1.0.1", "1.0.0", check=False)
    assert result.code != 0 and "immutable" in result.err
    result = cli("push", str(src), "geo:1.0.0", check=False)
    assert result.code != 0 and "immutable" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["push", "{src}", "Geo:1.0.0"], "bad dataset name"),
        (["push", "{src}", "geo/../x:1.0.0"], "bad dataset name"),
        (["push", "{src}", "geo:1.0"], "bad version tag"),
        (["push", "{src}", "geo:Bad Tag"], "bad tag"),
        (["push", "{src}", "geo"], "NAME:TAG"),
        (["pull", "geo:nope", "{out}"], "does not exist"),
        (["inspect", "geo:nope"], "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:1.0.0")
    result = cli(*(a.format(src=src, out=tmp_path / "out") for a in args), check=False)
    assert result.code != 0
    assert message in result.err
    assert "Traceback" not in result.err


def test_special_files_are_refused_before_upload(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    os.mkfifo(src / "a-fifo")
    result = cli("push", str(src), "geo:1.0.0", check=False)
    assert result.code != 0
    assert "a-fifo: a special file (FIFO)" in result.err
    assert "nothing was uploaded" in result.err
    # Refused before the store was even opened: not created either.
    assert not (cli.home / "data" / "aetherfs" / "store").exists()


def test_symlink_out_of_the_directory_is_refused(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    (src / "escape").symlink_to("/etc/passwd")
    result = cli("push", str(src), "geo:1.0.0", check=False)
    assert result.code != 0 and "outside the dataset" in result.err


def test_pull_refuses_to_replace_a_foreign_directory(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:1.0.0")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    result = cli("pull", "geo:1.0.0", str(mine), check=False)
    assert result.code != 0 and "--force" in result.err
    assert (mine / "precious.txt").read_text() == "keep me"
    cli("pull", "geo:1.0.0", str(mine), "--force")
    assert tree(mine) == tree(src)
