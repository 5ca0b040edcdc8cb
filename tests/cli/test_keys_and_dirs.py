"""Keys live outside the store, 0600, under XDG_CONFIG_HOME; cache and store follow XDG too."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from aetherfs.keys import load_keyring
from tests.cli.test_push_pull import make_tree
from tests.conftest import Cli


def test_xdg_directories_and_private_keyring(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=200_000)
    cli("push", str(src), "geo:1.0.0")
    cli("pull", "geo:1.0.0", str(tmp_path / "out"), "--cache")  # the cache is off by default

    keyrings = list((cli.home / "config" / "aetherfs" / "keys").glob("*.json"))
    assert len(keyrings) == 1
    assert stat.S_IMODE(keyrings[0].stat().st_mode) == 0o600
    store = cli.home / "data" / "aetherfs" / "store"
    assert (store / "aetherfs.json").exists()
    assert any((cli.home / "cache" / "aetherfs" / "blocks").rglob("*"))

    info = json.loads(cli("keys", "--json").out)
    assert info["keyring"] == str(keyrings[0])

    # The store holds neither secret, nor any plaintext of the dataset.
    keyring = load_keyring(keyrings[0])
    assert keyring.signing_seed is not None
    secrets = [keyring.master, keyring.signing_seed, keyring.master.hex().encode()]
    needle = (src / "sub/table.csv").read_bytes()[:64]
    for path in store.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path
            assert needle not in data, path
            assert b"table.csv" not in data, path


def test_explicit_keyring_path(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    keys = tmp_path / "my-keys.json"
    cli.env["AETHERFS_KEYS"] = str(keys)
    cli("push", str(src), "geo:1.0.0")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert not (cli.home / "config" / "aetherfs" / "keys").exists()
    del cli.env["AETHERFS_KEYS"]
    result = cli("inspect", "geo:1.0.0", check=False)
    assert result.code == 8 and "--keys" in result.err
    assert cli("inspect", "geo:1.0.0", "--keys", str(keys)).code == 0
