"""The data root: atomic switches, version collection, safe resolution of served paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aetherfs.agent.api import resolve_live_version
from aetherfs.agent.dataroot import DataRoot, VersionInfo
from aetherfs.agent.files import VersionTree
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.http.files import FILE, SYMLINK, join_link


def make_version(root: DataRoot, n: int, dataset: str, built: float) -> ManifestId:
    manifest_id = ManifestId.of(f"v{n}".encode())
    staging = root.staging_dir(manifest_id)
    staging.mkdir()
    (staging / "data.txt").write_text(f"version {n}\n")
    info = VersionInfo(manifest_id, dataset, built, b"", 1, 10, {})
    root.publish_version(staging, info)
    return manifest_id


def test_switch_collect_and_crash_leftovers(tmp_path: Path) -> None:
    root = DataRoot(tmp_path)
    root.prepare()
    ids = [make_version(root, n, "team/a", built=n) for n in range(4)]
    other = make_version(root, 9, "team/b", built=0)
    root.switch("team/a", "stable", ids[0])
    link = tmp_path / "team/a/stable"
    assert (link / "data.txt").read_text() == "version 0\n"
    root.switch("team/a", "stable", ids[3])  # replaces the link in one rename
    assert root.live("team/a", "stable") == ids[3]
    assert not os.path.isabs(os.readlink(link))
    root.switch("team/b", "canary", other)

    removed = root.collect(keep=1)
    # Live: ids[3] and other. Newest non-live of team/a kept: ids[2].
    assert set(removed) == {ids[0], ids[1]}
    assert {p.name for p in root.versions.iterdir()} == {ids[2].hex(), ids[3].hex(), other.hex()}
    assert root.live_links() == {("team/a", "stable"): ids[3], ("team/b", "canary"): other}

    # A crash mid-build leaves a staging dir; the next start removes it.
    leftover = root.staging_dir(ManifestId.of(b"half"))
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub").chmod(0o500)
    assert root.prepare() == [leftover]
    assert not leftover.exists()


def test_served_paths_stay_inside_live_versions(tmp_path: Path) -> None:
    root = DataRoot(tmp_path)
    root.prepare()
    manifest_id = make_version(root, 1, "team/a", built=1)
    root.switch("team/a", "stable", manifest_id)
    version = root.version_dir(manifest_id)
    (tmp_path / "secret").write_text("no")
    (version / "escape").symlink_to(tmp_path / "secret")
    (version / "up").symlink_to("../../secret")
    assert resolve_live_version(tmp_path, "team/a/stable/data.txt") == (
        "team/a:stable",
        "data.txt",
        version.resolve(),
    )
    assert resolve_live_version(tmp_path, "team/a/stable") == (
        "team/a:stable",
        "",
        version.resolve(),
    )
    for bad in [
        ".versions/" + manifest_id.hex() + "/data.txt",
        "team/a/nope/data.txt",
        "team/../team/a/stable/data.txt",
        "team/a/.stable.tmp/x",
        "team",
    ]:
        assert resolve_live_version(tmp_path, bad) is None, bad
    tree = VersionTree(version.resolve(), manifest_id.hex(), {})
    data = tree.lookup("data.txt")
    assert data is not None and data.kind == FILE and data.size == len("version 1\n")
    assert b"".join(tree.read("data.txt", 8, 10)) == b"1\n"
    # Links are reported as links (the file server only follows them inside the tree).
    escape = tree.lookup("escape")
    assert escape is not None and escape.kind == SYMLINK
    assert join_link("up", "../../secret") is None
    assert tree.lookup("escape/x") is None
    assert [n.path for n in tree.children("")] == ["data.txt", "escape", "up"]


def test_version_records_keep_block_ids_compactly_and_read_older_ones(tmp_path: Path) -> None:
    ids = [BlockId.of(bytes([n])) for n in range(3)]
    info = VersionInfo(
        ManifestId.of(b"v"), "team/a", 1.0, b"".join(i.digest for i in ids), 2, 20, {}
    )
    again = VersionInfo.from_json(info.to_json())
    assert list(again.block_ids()) == ids
    assert VersionInfo.from_json(info.to_json(), with_blocks=False).blocks == b""
    # Records written before block ids were base64 held a list of hex ids.
    older = json.loads(info.to_json()) | {"blocks": [i.hex() for i in ids]}
    assert list(VersionInfo.from_json(json.dumps(older)).block_ids()) == ids
