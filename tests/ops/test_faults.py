"""Bad input and faults, end to end: each a clear error, a non-zero exit, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from aetherfs.config import Settings
from aetherfs.core.manifest import seal_document
from aetherfs.keys import load_keyring, save_keyring
from aetherfs.repository import StoreRepository, open_keyring
from aetherfs.store import layout
from aetherfs.store.local import LocalStore
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.fixtures.cache_index import cached_blocks


def store_root(cli: Cli) -> Path:
    return cli.home / "data" / "aetherfs" / "store"


def repository(cli: Cli) -> StoreRepository:
    settings = Settings.from_env(cli.env)
    store = LocalStore(store_root(cli))
    return StoreRepository(store, open_keyring(store, settings.keys_dir, None, create=False))


@pytest.fixture
def published(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    """v1 pulled into out/, v2 published: the starting point of every fault."""
    src = tmp_path / "src"
    make_tree(src)
    cli("push", str(src), "geo:1.0.0")
    out = tmp_path / "out"
    cli("pull", "geo:1.0.0", str(out), "--cache")
    (src / "big.bin").write_bytes(os.urandom(2_000_000))
    cli("push", str(src), "geo:2.0.0")
    return src, out


def assert_untouched(out: Path, before: dict[str, tuple[str, int, bytes]]) -> None:
    assert tree(out) == before


def packs(cli: Cli) -> list[Path]:
    return sorted((store_root(cli) / "packs").rglob("*"), key=lambda p: p.stat().st_mtime)


def test_altered_pack_is_refused_and_dir_keeps_old_version(
    cli: Cli, published: tuple[Path, Path]
) -> None:
    _, out = published
    before = tree(out)
    newest = [p for p in packs(cli) if p.is_file()][-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    result = cli("pull", "geo:2.0.0", str(out), "--no-cache", check=False)
    assert result.code == 5, result.err
    assert "does not match its id" in result.err
    assert_untouched(out, before)


def test_missing_pack_is_a_clear_error(cli: Cli, published: tuple[Path, Path]) -> None:
    _, out = published
    before = tree(out)
    for pack in packs(cli):
        if pack.is_file():
            pack.unlink()
    result = cli("pull", "geo:2.0.0", str(out), "--no-cache", check=False)
    assert result.code == 3, result.err
    assert "missing from the store" in result.err
    assert_untouched(out, before)


def test_altered_manifest_is_refused(cli: Cli, published: tuple[Path, Path]) -> None:
    _, out = published
    for manifest in (store_root(cli) / "manifests").iterdir():
        manifest.write_bytes(manifest.read_bytes()[:-1] + b"\0")
    # The copies kept locally are checked against their ids too, and would still be good:
    # drop them so the altered ones on the store are read.
    shutil.rmtree(cli.home / "cache" / "aetherfs" / "manifests")
    result = cli("inspect", "geo:2.0.0", check=False)
    assert result.code == 5 and "altered" in result.err
    result = cli("pull", "geo:2.0.0", str(out), check=False)
    assert result.code == 5 and "Traceback" not in result.err


def test_wrong_key_is_refused(cli: Cli, published: tuple[Path, Path], tmp_path: Path) -> None:
    keys_dir = cli.home / "config" / "aetherfs" / "keys"
    (keyring_file,) = keys_dir.glob("*.json")
    keyring = load_keyring(keyring_file)
    save_keyring(type(keyring)(keyring.store_id, os.urandom(32), None), keyring_file)
    result = cli("pull", "geo:2.0.0", str(tmp_path / "elsewhere"), check=False)
    assert result.code == 8
    assert "not the key of the store" in result.err
    keyring_file.unlink()
    result = cli("ls", check=False)
    assert result.code == 8 and "no keyring" in result.err and "--keys" in result.err


def test_forged_tag_is_refused(cli: Cli, published: tuple[Path, Path]) -> None:
    tag_file = store_root(cli) / "tags" / "geo" / "@latest"
    doc = msgpack.unpackb(tag_file.read_bytes())
    record = bytearray(doc["records"][-1])
    record[10] ^= 1  # inside the signature
    doc["records"][-1] = bytes(record)
    tag_file.write_bytes(msgpack.packb(doc))
    result = cli("pull", "geo:latest", str(published[1]), check=False)
    assert result.code == 5 and "bad signature" in result.err


def publish_raw_manifest(cli: Cli, files: list[dict[str, object]]) -> None:
    """Sign and tag, as `geo:evil`, a manifest that skipped the producer's checks."""
    repo = repository(cli)
    body = msgpack.packb(
        {
            "v": 1,
            "dataset": "geo",
            "created": 1.0,
            "chunking": [65536, 262144, 1048576],
            "files": files,
            "meta": {},
        }
    )
    manifest_id, stored = seal_document(body, "geo", repo.keyring.dataset_key("geo"))
    repo.store.put(layout.manifest_key(manifest_id), stored)
    repo.set_tag("geo", "evil", manifest_id)


@pytest.mark.parametrize("path", ["../escaped", "/tmp/escaped-abs", "a/../../escaped"])
def test_manifest_naming_a_path_outside_is_refused(
    cli: Cli, published: tuple[Path, Path], path: str
) -> None:
    """A producer's manifest (valid key, valid signature) that names a path outside DIR."""
    _, out = published
    publish_raw_manifest(cli, [{"p": path, "k": "f", "m": 0o644, "s": 0, "b": []}])
    result = cli("pull", "geo:evil", str(out), check=False)
    assert result.code == 5, result.err
    assert "path" in result.err
    assert not (out.parent / "escaped").exists()
    assert not Path("/tmp/escaped-abs").exists()


def test_symlink_leaving_the_dataset_in_a_manifest_is_refused(
    cli: Cli, published: tuple[Path, Path]
) -> None:
    _, out = published
    publish_raw_manifest(cli, [{"p": "link", "k": "l", "m": 0o777, "t": "../../etc/passwd"}])
    result = cli("pull", "geo:evil", str(out), check=False)
    assert result.code == 5 and "outside the dataset" in result.err


def test_corrupt_cache_block_is_refetched_not_served(
    cli: Cli, published: tuple[Path, Path], tmp_path: Path
) -> None:
    src, _ = published
    cache = cli.home / "cache" / "aetherfs" / "blocks"
    for block in cached_blocks(cache).values():
        with block.segment.open("r+b") as f:
            f.seek(block.offset)
            f.write(b"garbage")
    fresh = tmp_path / "fresh"
    pulled = json.loads(cli("pull", "geo:1.0.0", str(fresh), "--json", "--cache").out)
    assert "cache" not in pulled["bytes_by_source"]
    assert pulled["bytes_by_source"]["store"] > 0
    assert (fresh / "sub/table.csv").read_bytes() == (src / "sub/table.csv").read_bytes()


def count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (or after 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ready():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def written_bytes(root: Path) -> int:
    """Bytes of data (not holes) in the files under `root`."""
    return (
        sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())
        if root.exists()
        else 0
    )


def pull_killed_half_way(cli: Cli, ref: str, out: Path, *flags: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "pull", ref, str(out), "--force", *flags],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = out.parent / f".{out.name}.aetherfs-staging"
    kill_when(proc, lambda: written_bytes(staging) >= 60 * 1024 * 1024)


@pytest.mark.slow
def test_kill_9_mid_pull_then_pull_again(cli: Cli, tmp_path: Path) -> None:
    """No block cache by default: the next pull resumes from the staging tree the killed one
    left, and fetches only what it had not written."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"part{i}.bin").write_bytes(os.urandom(48 * 1024 * 1024))
    cli("push", str(src), "big:1.0.0")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the old state")
    pull_killed_half_way(cli, "big:1.0.0", out, "--workers", "1")
    # Killed half-way: DIR is still exactly the old state, and no cache was written.
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert (out / "old.txt").read_text() == "the old state"
    assert not (cli.home / "cache" / "aetherfs" / "blocks").exists()

    again = json.loads(cli("pull", "big:1.0.0", str(out), "--force", "--json").out)
    by_source = again["bytes_by_source"]
    total = sum(by_source.values())
    assert by_source.get("local", 0) >= 40 * 1024 * 1024, by_source
    assert by_source.get("store", 0) < total - 40 * 1024 * 1024
    assert tree(out) == tree(src)
    assert not (tmp_path / ".out.aetherfs-staging").exists()


@pytest.mark.slow
def test_a_resumed_pull_refetches_what_was_damaged_and_never_writes_a_planted_link(
    cli: Cli, tmp_path: Path
) -> None:
    """Bytes left in the staging tree are re-hashed before use; a symlink or a hard link
    planted there (for a file or a directory) is removed, never written through, and what
    the new version does not hold is removed."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "deep").mkdir()
    for i in range(4):
        (src / f"part{i}.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    (src / "sub" / "nested.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    (src / "deep" / "inside.txt").write_text("a file in a directory a symlink replaces")
    cli("push", str(src), "big:1.0.0")
    out = tmp_path / "out"
    pull_killed_half_way(cli, "big:1.0.0", out, "--workers", "1")
    staging = tmp_path / ".out.aetherfs-staging"
    written = [p for p in staging.iterdir() if p.is_file() and p.stat().st_blocks]
    assert written
    with written[0].open("r+b") as f:  # damage the first block of a written file
        f.write(b"garbage")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me too")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inside.txt").write_text("not to be touched")
    for name, plant in (("part2.bin", "symlink"), ("part3.bin", "hardlink")):
        (staging / name).unlink(missing_ok=True)
        if plant == "symlink":
            (staging / name).symlink_to(outside)
        else:
            os.link(victim, staging / name)
    shutil.rmtree(staging / "deep", ignore_errors=True)
    (staging / "deep").symlink_to(elsewhere, target_is_directory=True)
    (staging / "stray.bin").write_bytes(b"not in the version")
    again = json.loads(cli("pull", "big:1.0.0", str(out), "--json").out)
    assert tree(out) == tree(src)
    assert again["bytes_by_source"].get("local", 0) > 0
    assert outside.read_bytes() == b"keep me"
    assert victim.read_bytes() == b"keep me too"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["inside.txt"]
    assert (elsewhere / "inside.txt").read_text() == "not to be touched"


@pytest.mark.slow
def test_kill_9_mid_pull_with_the_cache_then_pull_again(cli: Cli, tmp_path: Path) -> None:
    """With --cache, blocks are kept in the cache as they come, as before."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"part{i}.bin").write_bytes(os.urandom(48 * 1024 * 1024))
    cli("push", str(src), "big:1.0.0")
    out = tmp_path / "out"
    cache = cli.home / "cache" / "aetherfs" / "blocks"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "pull", "big:1.0.0", str(out), "--cache"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_when(proc, lambda: len(cached_blocks(cache)) >= 20)
    shutil.rmtree(tmp_path / ".out.aetherfs-staging")  # only the cache is left to resume from
    again = json.loads(cli("pull", "big:1.0.0", str(out), "--json", "--cache").out)
    assert again["bytes_by_source"].get("cache", 0) > 0, again["bytes_by_source"]
    assert tree(out) == tree(src)


@pytest.mark.slow
def test_kill_9_mid_push_then_push_again(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:1.0.0")
    for i in range(4):
        (src / f"part{i}.bin").write_bytes(os.urandom(48 * 1024 * 1024))
    packs_dir = store_root(cli) / "packs"
    before = count_files(packs_dir)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aetherfs.cli.main",
            "push",
            str(src),
            "geo:2.0.0",
            "--workers",
            "1",
        ],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_when(proc, lambda: count_files(packs_dir) >= before + 2)
    tags = json.loads(cli("tags", "geo", "--json").out)
    assert "2.0.0" not in tags  # the interrupted version was never named
    assert tags["latest"][0]["manifest"] == tags["1.0.0"][0]["manifest"]
    cli("push", str(src), "geo:2.0.0")
    out = tmp_path / "out"
    cli("pull", "geo:2.0.0", str(out))
    assert tree(out) == tree(src)
