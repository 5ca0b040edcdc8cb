"""`aetherfs hub` sub-actions take --store/--keys before or after the action."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aetherfs.cli.hub_cmd import hub_config
from aetherfs.cli.main import build_parser
from tests.conftest import Cli


@pytest.mark.parametrize(
    "argv",
    [
        ["hub", "--store", "S", "--keys", "K", "token", "create", "--name", "n"],
        ["hub", "token", "create", "--name", "n", "--store", "S", "--keys", "K"],
        ["hub", "--store", "S", "token", "create", "--keys", "K", "--name", "n"],
        ["hub", "--store", "S", "--keys", "K", "grant", "t/d", "user:u", "read"],
        ["hub", "grant", "--store", "S", "t/d", "user:u", "read", "--keys", "K"],
        ["hub", "--store", "S", "--keys", "K", "token", "list"],
        ["hub", "--store", "S", "--keys", "K", "token", "revoke", "--name", "n"],
    ],
)
def test_common_flags_in_either_position(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.store, args.keys, args.hub) == ("S", "K", None)


def test_sub_actions_without_the_flags_default_to_none() -> None:
    args = build_parser().parse_args(["hub", "token", "list"])
    assert (args.store, args.keys, args.hub) == (None, None, None)


def test_store_before_the_action_is_the_store_written(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "default").as_uri()
    other = (tmp_path / "other").as_uri()
    keys = str(tmp_path / "other-keys.json")
    assert (
        cli.inproc("hub", "--store", other, "--keys", keys, "token", "create", "--name", "a") == 0
    )
    assert (
        cli.inproc("hub", "--store", other, "--keys", keys, "grant", "t/d", "user:a", "read") == 0
    )
    capsys.readouterr()
    assert cli.inproc("hub", "token", "list", "--json", "--store", other, "--keys", keys) == 0
    assert [t["name"] for t in json.loads(capsys.readouterr().out)] == ["a"]
    # Nothing went to the default store.
    assert not (tmp_path / "default").exists()


def test_cert_days_is_parsed_and_checked(cli: Cli, tmp_path: Path) -> None:
    args = build_parser().parse_args(["hub", "--cert-days", "0.5"])
    assert hub_config(args).cert_days == 0.5
    assert hub_config(build_parser().parse_args(["hub"])).cert_days == 30.0
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    refused = cli("hub", "--listen", "127.0.0.1:0", "--cert-days", "0", check=False)
    assert refused.code == 2 and "--cert-days" in refused.err and "Traceback" not in refused.err
