"""The agent through a hub (`--hub` / AETHERFS_HUB): no store access and no keyring on the
agent's host, only a reader's token; channel moves still go live."""

from __future__ import annotations

from pathlib import Path

from tests.agent.conftest import AgentProcess, push, tree, write_dataset
from tests.conftest import Cli
from tests.hub.conftest import hub_process
from tests.hub.test_cli_hub import client_cli


def test_agent_through_a_hub(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    write_dataset(src, 1, big=300_000)
    v1 = push(cli, src, "team/geo-db:1.0.0", "stable")
    token = cli("hub", "token", "create", "--name", "agent").out.strip()
    cli("hub", "grant", "team/geo-db", "user:agent", "read")
    with hub_process(cli) as hub:
        host = client_cli(cli, hub.url, "agent-host")
        host("login", "--token", token)
        agent = AgentProcess(
            host,
            tmp_path / "root",
            ["--subscribe", "team/geo-db:stable", "--poll-interval", "0.2"],
            tmp_path / "agent.log",
        )
        try:
            agent.start()
            snap = agent.wait_live("team/geo-db:stable", v1)
            assert snap["agent"]["store"] == hub.url
            assert tree(agent.data_root / "team/geo-db/stable") == tree(src)
            (src / "sub/small.txt").write_text("moved by the producer\n")
            v2 = push(cli, src, "team/geo-db:1.1.0", "stable")
            agent.wait_live("team/geo-db:stable", v2)
            assert tree(agent.data_root / "team/geo-db/stable") == tree(src)
            assert agent.stop() == 0
        finally:
            agent.close()
    assert not list((host.home / "config/aetherfs").glob("keys/*.json"))
