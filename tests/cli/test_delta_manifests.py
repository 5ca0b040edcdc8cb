"""Versions stored as deltas on `latest`: small to fetch, whole when pulled, anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.test_push_pull import tree
from tests.conftest import Cli


def manifest_size(cli: Cli, manifest: str) -> int:
    return (cli.home / "data" / "aetherfs" / "store" / "manifests" / manifest).stat().st_size


def test_versions_chain_as_deltas_and_resolve_whole(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"file{i:02}.bin").write_bytes(os.urandom(300_000))
    first = json.loads(cli("push", str(src), "geo:1.0.0", "--json").out)
    expected = {}
    for n in range(1, 4):
        (src / f"file{n:02}.bin").write_bytes(os.urandom(300_000))
        (src / f"new{n}.txt").write_text(f"version {n}")
        if n == 3:
            (src / "file39.bin").unlink()
        pushed = json.loads(cli("push", str(src), f"geo:1.0.{n}", "--json").out)
        expected[n] = (pushed["manifest"], tree(src))
        # A delta names two changed files, not all forty block lists.
        assert manifest_size(cli, pushed["manifest"]) < manifest_size(cli, first["manifest"]) / 5

    # A reader with nothing cached resolves the whole chain; each version is bit-exact.
    cli.env["XDG_CACHE_HOME"] = str(tmp_path / "fresh-cache")
    for n, (manifest, files) in expected.items():
        out = tmp_path / f"out{n}"
        pulled = json.loads(cli("pull", f"geo:1.0.{n}", str(out), "--json").out)
        assert pulled["manifest"] == manifest
        assert tree(out) == files
    inspect = json.loads(cli("inspect", "geo:1.0.3", "--json").out)
    assert inspect["total_files"] == 42
    assert not (out / "file39.bin").exists()

    # A damaged local copy of a manifest is noticed (ids are checked) and fetched again.
    cached = tmp_path / "fresh-cache" / "aetherfs" / "manifests"
    for path in cached.iterdir():
        path.write_bytes(b"garbage")
    again = json.loads(cli("inspect", "geo:1.0.2", "--json").out)
    assert again["manifest"] == expected[2][0]
