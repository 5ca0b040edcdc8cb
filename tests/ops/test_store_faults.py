"""The store failing under us: unreachable S3, a full disk. A clear error, nothing half-done."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.fixtures.ports import free_port


def test_unreachable_s3_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli.env["AETHERFS_STORE"] = "s3://some-bucket/prefix"
    cli.env["AETHERFS_S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    started = time.monotonic()
    result = cli("push", str(src), "geo:1.0.0", check=False)
    assert result.code == 7, result.err
    assert "cannot reach the store" in result.err
    assert "Traceback" not in result.err
    assert time.monotonic() - started < 60
    result = cli("pull", "geo:1.0.0", str(tmp_path / "out"), check=False)
    assert result.code == 7 and "cannot reach the store" in result.err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: a real ENOSPC. Needs root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and must run as root (CI does)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_push_to_a_full_disk_fails_cleanly_and_keeps_what_was_there(
    cli: Cli, tmp_path: Path, small_disk: Path
) -> None:
    cli.env["AETHERFS_STORE"] = (small_disk / "store").as_uri()
    small = tmp_path / "small-src"
    make_tree(small, big=1000)
    cli("push", str(small), "geo:1.0.0")
    big = tmp_path / "big-src"
    big.mkdir()
    (big / "huge.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    result = cli("push", str(big), "geo:2.0.0", check=False)
    assert result.code == 7, result.err
    assert "out of space" in result.err
    # The earlier version is intact and still what the channels name.
    tags = json.loads(cli("tags", "geo", "--json").out)
    assert "2.0.0" not in tags
    assert tags["latest"][0]["manifest"] == tags["1.0.0"][0]["manifest"]
    out = tmp_path / "out"
    cli("pull", "geo:latest", str(out))
    assert tree(out) == tree(small)


def test_pull_onto_a_full_disk_leaves_dir_as_it_was(
    cli: Cli, tmp_path: Path, small_disk: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:1.0.0")
    (src / "big.bin").write_bytes(os.urandom(30 * 1024 * 1024))
    cli("push", str(src), "geo:2.0.0")
    out = small_disk / "out"
    cli("pull", "geo:1.0.0", str(out), "--no-cache")
    before = tree(out)
    result = cli("pull", "geo:2.0.0", str(out), "--no-cache", check=False)
    assert result.code != 0
    assert "space" in result.err and "Traceback" not in result.err
    assert tree(out) == before
