"""What push cannot read or name is refused, naming the path, before anything is uploaded.

Tests run as root, which reads any file whatever its mode: the pushes whose permissions
matter run under `setpriv` with every capability dropped, as an ordinary user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_push_pull import make_tree
from tests.conftest import Cli, Result

NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def push_without_capabilities(cli: Cli, *args: str) -> Result:
    done = subprocess.run(
        [*NO_CAPS, sys.executable, "-m", "aetherfs.cli.main", "push", *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_setpriv_really_drops_what_lets_root_read_anything(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    done = subprocess.run([*NO_CAPS, "ls", str(locked)], capture_output=True, text=True)
    assert done.returncode != 0 and "Permission denied" in done.stderr


@pytest.fixture
def store(cli: Cli, tmp_path: Path) -> Path:
    """A store holding geo:1.0.0, so that a refused push can be seen to change nothing."""
    path = tmp_path / "store"
    cli.env["AETHERFS_STORE"] = path.as_uri()
    first = tmp_path / "first"
    make_tree(first, big=1000)
    cli("push", str(first), "geo:1.0.0")
    return path


def _store_objects(store: Path) -> set[str]:
    return {
        p.relative_to(store).as_posix()
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] not in (".tmp", ".locks")
    }


def test_unreadable_directory_is_refused_not_published_empty(
    cli: Cli, tmp_path: Path, store: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    (src / "sub/deeper/data.bin").write_bytes(b"x" * 5000)
    (src / "sub/deeper").chmod(0)
    before = _store_objects(store)
    try:
        result = push_without_capabilities(cli, str(src), "geo:2.0.0")
    finally:
        (src / "sub/deeper").chmod(0o755)
    assert result.code == 2, result.err
    assert "sub/deeper: cannot read the directory (Permission denied)" in result.err
    assert "nothing was uploaded" in result.err and "Traceback" not in result.err
    assert _store_objects(store) == before
    assert "2.0.0" not in json.loads(cli("tags", "geo", "--json").out)


def test_unreadable_file_is_refused(cli: Cli, tmp_path: Path, store: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    (src / "sub/secret.bin").write_bytes(b"y" * 5000)
    (src / "sub/secret.bin").chmod(0)
    before = _store_objects(store)
    result = push_without_capabilities(cli, str(src), "geo:2.0.0")
    assert result.code == 2, result.err
    assert "sub/secret.bin: cannot read the file (permission denied)" in result.err
    assert "Traceback" not in result.err
    assert _store_objects(store) == before


def test_unreadable_top_directory_is_refused(cli: Cli, tmp_path: Path, store: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    src.chmod(0o100)  # may be entered, not listed
    try:
        result = push_without_capabilities(cli, str(src), "geo:2.0.0")
    finally:
        src.chmod(0o755)
    assert result.code == 2, result.err
    assert f"{src}: cannot read the directory (Permission denied)" in result.err


def test_non_utf8_name_is_refused_before_any_upload(cli: Cli, tmp_path: Path, store: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    (src / "new.bin").write_bytes(os.urandom(50_000))  # would make a new pack
    os.close(os.open(os.fsencode(src / "sub") + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY))
    os.mkdir(os.fsencode(src) + b"/dir\xff")
    os.close(os.open(os.fsencode(src) + b"/dir\xff/inner", os.O_CREAT | os.O_WRONLY))
    before = _store_objects(store)
    result = cli("push", str(src), "geo:2.0.0", check=False)
    assert result.code == 2, result.err
    assert "sub/caf\\xe9.txt: the name is not UTF-8; rename it" in result.err
    assert "dir\\xff: the name is not UTF-8" in result.err
    assert "inner" not in result.err  # the refused directory is not entered
    assert "Traceback" not in result.err
    assert _store_objects(store) == before  # no orphan pack


SCRIPT = """
import sys
from pathlib import Path
from aetherfs.errors import LocalIOError
from aetherfs.ops.push import push_directory
from aetherfs.ops.scan import scan_directory
from aetherfs.repository import StoreRepository, open_keyring
from aetherfs.store.local import LocalStore

src, store_dir, keys = (Path(a) for a in sys.argv[1:])
entries = scan_directory(src)
(src / "late.bin").chmod(0)  # unreadable after the scan, before push reads it
store = LocalStore(store_dir)
repo = StoreRepository(store, open_keyring(store, keys.parent, keys, create=True))
try:
    push_directory(repo, src, "geo", ["2.0.0"], entries=entries)
except LocalIOError as exc:
    print(exc)
    sys.exit(9)
"""


def test_file_unreadable_when_push_reads_it_is_named(cli: Cli, tmp_path: Path, store: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    (src / "late.bin").write_bytes(b"z" * 5000)
    (keys,) = (cli.home / "config" / "aetherfs" / "keys").glob("*.json")
    done = subprocess.run(
        [*NO_CAPS, sys.executable, "-c", SCRIPT, str(src), str(store), str(keys)],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr
    assert f"cannot read {src / 'late.bin'}: Permission denied" in done.stdout
    assert "nothing was published" in done.stdout
    assert "2.0.0" not in json.loads(cli("tags", "geo", "--json").out)
