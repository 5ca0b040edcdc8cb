"""The CLI through a hub (`--hub URL` / AETHERFS_HUB): login, then the same commands as on a
store, with no keyring and no store access on the client side."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tests.conftest import Cli
from tests.hub.conftest import HubProcess
from tests.hub.helpers import make_tree

StartHub = Callable[..., AbstractContextManager[HubProcess]]


def client_cli(cli: Cli, hub_url: str, name: str) -> Cli:
    """A user on another machine: no store, no keyring, only the hub."""
    home = cli.home.parent / f"{name}-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in cli.env.items() if k != "AETHERFS_STORE"}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "AETHERFS_HUB": hub_url,
        }
    )
    return Cli(env, home)


def test_login_and_read_commands_through_the_hub(
    cli: Cli, start_hub_process: StartHub, tmp_path: Path
) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    make_tree(src, size=200_000)
    cli("push", str(src), "team/geo-db:1.0.0", "--tag", "stable")
    (src / "README").write_text("version 2\n")
    cli("push", str(src), "team/geo-db:1.1.0")
    reader = cli("hub", "token", "create", "--name", "rita").out.strip()
    writer = cli("hub", "token", "create", "--name", "will").out.strip()
    cli("hub", "grant", "team/geo-db", "user:rita", "read")
    cli("hub", "grant", "team/geo-db", "user:will", "write")
    direct_inspect = json.loads(cli("inspect", "team/geo-db:stable", "--json").out)
    with start_hub_process() as hub:
        rita = client_cli(cli, hub.url, "rita")
        assert "no datasets" in rita("ls").out  # anonymous: only public datasets
        anonymous = rita("inspect", "team/geo-db:stable", check=False)
        assert anonymous.code == 10 and "aetherfs login" in anonymous.err
        bad = rita("login", "--token", "afs_wrong", check=False)
        assert bad.code == 10 and "not valid" in bad.err
        out = rita("login", "--token", reader).out
        assert "user:rita" in out
        saved = rita.home / "config/aetherfs/hub-tokens.json"
        assert saved.stat().st_mode & 0o777 == 0o600

        listed = json.loads(rita("ls", "--json").out)
        assert [d["dataset"] for d in listed] == ["team/geo-db"]
        tags = json.loads(rita("tags", "team/geo-db", "--history", "--json").out)
        assert sorted(tags) == ["1.0.0", "1.1.0", "latest", "stable"]
        assert [r["seq"] for r in tags["latest"]] == [1, 2]
        inspected = json.loads(rita("inspect", "team/geo-db:stable", "--json").out)
        assert inspected == direct_inspect
        diff = json.loads(rita("diff", "team/geo-db:1.0.0", "team/geo-db:1.1.0", "--json").out)
        assert [c["path"] for c in diff["changes"]] == ["README"]

        refused = rita("tag", "team/geo-db:1.1.0", "stable", check=False)
        assert refused.code == 4 and "write role" in refused.err
        will = client_cli(cli, hub.url, "will")
        will.env["AETHERFS_HUB_TOKEN"] = writer
        moved = json.loads(will("tag", "team/geo-db:1.1.0", "stable", "--json").out)
        assert moved["seq"] == 2

        # Push through the hub: packs, manifest and tags go through it; dedup still works.
        with (src / "sub/table.csv").open("a") as f:
            f.write("appended,row\n" * 50)
        pushed = json.loads(will("push", str(src), "team/geo-db:1.2.0", "--json").out)
        assert 0 < pushed["new_bytes"] < pushed["bytes"] / 4
        assert rita("push", str(src), "team/geo-db:1.3.0", check=False).code == 4
        # Pull through the hub into a fresh directory: the same tree, bytes from the hub.
        target = tmp_path / "pulled"
        pulled = json.loads(rita("pull", "team/geo-db:1.2.0", str(target), "--json").out)
        assert pulled["manifest"] == pushed["manifest"]
        for path in src.rglob("*"):
            if path.is_file():
                assert (target / path.relative_to(src)).read_bytes() == path.read_bytes()
        # What needs the store itself is refused before anything is read, in words.
        for command in (["gc"], ["keys"], ["tag", "--repair", "team/geo-db:stable"]):
            refused = will(*command, check=False)
            assert refused.code == 2 and "needs direct store access" in refused.err, command
            assert "--store" in refused.err and hub.url in refused.err
    # The move is on the store, signed by the registry key: a direct reader sees it.
    direct = json.loads(cli("tags", "team/geo-db", "--json").out)
    assert direct["stable"][0]["manifest"] == moved["manifest"]
