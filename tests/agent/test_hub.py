"""The agent through a hub (`--hub` / AETHERFS_HUB): no store access and no keyring on the
agent's host, only a reader's token; channel moves still go live."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.agent.conftest import AgentProcess, push, tree, write_dataset
from tests.conftest import Cli
from tests.hub.conftest import hub_process
from tests.hub.test_cli_hub import client_cli

REPORT = ("--report-interval", "0.3")


def test_agent_through_a_hub(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    write_dataset(src, 1, big=300_000)
    v1 = push(cli, src, "team/geo-db:1.0.0", "stable")
    token = cli("hub", "token", "create", "--name", "edge-1", "--agent").out.strip()
    cli("hub", "grant", "team/geo-db", "agent:edge-1", "read")
    admin = cli("hub", "token", "create", "--name", "ops", "--admin").out.strip()
    with hub_process(cli) as hub:
        host = client_cli(cli, hub.url, "agent-host")
        host("login", "--token", token)
        agent = AgentProcess(
            host,
            tmp_path / "root",
            ["--subscribe", "team/geo-db:stable", "--poll-interval", "0.2", *REPORT],
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
            # The agent reports its status to the hub: the hub's fleet view shows v2 live.
            snap = agent.wait_for(
                lambda s: (
                    s["subscriptions"][0]["live"]["manifest"] == v2
                    and (s["hub_report"] or {}).get("state_of", 0)
                    > s["subscriptions"][0]["live"]["since"]
                ),
                "a report after v2",
            )
            assert snap["hub_report"]["agent"] == "edge-1"
            reported = httpx.get(
                f"{hub.url}/v1/agents/edge-1/status",
                headers={"Authorization": f"Bearer {admin}"},
                timeout=10,
            ).json()
            live = reported["report"]["subscriptions"][0]["live"]
            assert live["manifest"] == v2 and reported["agent"] == "edge-1"
            assert agent.stop() == 0
        finally:
            agent.close()
    assert not list((host.home / "config/aetherfs").glob("keys/*.json"))
