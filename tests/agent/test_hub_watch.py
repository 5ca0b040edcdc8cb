"""The agent through a hub learns of channel moves from the hub's watch stream (server-sent
events), not from its poll interval; and it rides out the hub going away and coming back."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.agent.conftest import AgentProcess, push, tree, write_dataset
from tests.conftest import Cli
from tests.fixtures.ports import free_port
from tests.hub.conftest import hub_process
from tests.hub.test_cli_hub import client_cli

# The agent polls once a minute: anything sooner came from the watch stream.
SLOW_POLL = ("--poll-interval", "60")


def _setup(cli: Cli, tmp_path: Path) -> tuple[Path, str, str, str]:
    """A store with stable -> 1.0.0 and an unpublished 1.1.0; a reader's and a writer's token."""
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    write_dataset(src, 1, big=200_000)
    v1 = push(cli, src, "team/geo-db:1.0.0", "stable")
    (src / "sub/small.txt").write_text("moved by the producer\n")
    v2 = push(cli, src, "team/geo-db:1.1.0")
    reader = cli("hub", "token", "create", "--name", "edge-1", "--agent").out.strip()
    cli("hub", "grant", "team/geo-db", "agent:edge-1", "read")
    writer = cli("hub", "token", "create", "--name", "release").out.strip()
    cli("hub", "grant", "team/geo-db", "user:release", "write")
    return src, v1, v2, f"{reader} {writer}"


def _stream(snap: dict[str, Any]) -> dict[str, Any]:
    watch: dict[str, Any] = (snap.get("hub_watch") or {}).get("team/geo-db") or {}
    return watch


def test_a_tag_move_through_the_hub_goes_live_from_the_watch_stream(
    cli: Cli, tmp_path: Path
) -> None:
    src, v1, v2, tokens = _setup(cli, tmp_path)
    reader, writer = tokens.split()
    with hub_process(cli) as hub:
        host = client_cli(cli, hub.url, "agent-host")
        host("login", "--token", reader)
        release = client_cli(cli, hub.url, "release")
        release.env["AETHERFS_HUB_TOKEN"] = writer
        agent = AgentProcess(
            host,
            tmp_path / "root",
            ["--subscribe", "team/geo-db:stable", *SLOW_POLL],
            tmp_path / "agent.log",
        )
        try:
            agent.start()
            agent.wait_live("team/geo-db:stable", v1)
            agent.wait_for(lambda s: _stream(s).get("connected") is True, "the stream connected")
            moved_at = time.monotonic()
            release("tag", "team/geo-db:1.1.0", "stable", "--hub", hub.url)
            agent.wait_live("team/geo-db:stable", v2, timeout=15)
            took = time.monotonic() - moved_at
            assert took < 10, f"{took:.1f} s: the poll (60 s), not the stream, found the move"
            assert tree(agent.data_root / "team/geo-db/stable") == tree(src)
            assert "event=hub.watch.moved" in agent.log()
            assert _stream(agent.status())["events"] >= 2  # the head at connect, then the move
            assert agent.stop() == 0
        finally:
            agent.close()


def test_the_hub_goes_away_and_comes_back(cli: Cli, tmp_path: Path) -> None:
    src, v1, v2, tokens = _setup(cli, tmp_path)
    reader, writer = tokens.split()
    port = free_port()
    listen = ("--listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    host = client_cli(cli, url, "agent-host")
    release = client_cli(cli, url, "release")
    release.env["AETHERFS_HUB_TOKEN"] = writer
    agent = AgentProcess(
        host,
        tmp_path / "root",
        ["--subscribe", "team/geo-db:stable", *SLOW_POLL],
        tmp_path / "agent.log",
    )
    link = agent.data_root / "team/geo-db/stable"
    try:
        with hub_process(cli, *listen) as hub:
            assert hub.url == url
            host("login", "--token", reader)
            agent.start()
            agent.wait_live("team/geo-db:stable", v1)
            agent.wait_for(lambda s: _stream(s).get("connected") is True, "the stream connected")
            old = tree(link)
            hub.process.send_signal(signal.SIGKILL)
            hub.process.wait(10)

            # Status says the hub is gone, with a retry scheduled further out each time.
            snap = agent.wait_for(
                lambda s: (
                    _stream(s).get("retries", 0) >= 2
                    and s["subscriptions"][0]["state"] == "retrying"
                ),
                "the outage reported",
            )
            watch, channel = _stream(snap), snap["subscriptions"][0]
            assert watch["connected"] is False and watch["last_error"]
            assert watch["next_retry"] > time.time() - 1
            assert channel["last_error"] and channel["retries"] >= 1
            assert channel["next_retry"] is not None
            assert "event=hub.watch.dropped" in agent.log()
            # The live version is still served: the link, and files over the agent's HTTP.
            assert channel["live"]["manifest"] == v1
            assert link.is_symlink() and tree(link) == old
            got = httpx.get(f"{agent.url}/files/team/geo-db/stable/sub/small.txt", timeout=10)
            assert got.status_code == 200 and got.text == "version 1\n"

        with hub_process(cli, *listen) as hub:
            agent.wait_for(lambda s: _stream(s).get("connected") is True, "the stream back")
            moved_at = time.monotonic()
            release("tag", "team/geo-db:1.1.0", "stable")
            snap = agent.wait_live("team/geo-db:stable", v2, timeout=20)
            assert time.monotonic() - moved_at < 15
            assert tree(link) == tree(src)
            assert snap["subscriptions"][0]["state"] in ("idle", "downloading")
            assert agent.stop() == 0
    finally:
        agent.close()


def test_through_the_hub_a_first_publish_goes_live_from_the_stream(
    cli: Cli, tmp_path: Path
) -> None:
    """A channel and a dataset nobody has published yet are waited for (no error, no
    backoff); their first publish goes live from the watch stream, not the 60 s poll."""
    src, _v1, v2, tokens = _setup(cli, tmp_path)
    reader, writer = tokens.split()
    cli("hub", "grant", "team/new", "agent:edge-1", "read")
    cli("hub", "grant", "team/new", "user:release", "write")
    with hub_process(cli) as hub:
        host = client_cli(cli, hub.url, "agent-host")
        host("login", "--token", reader)
        release = client_cli(cli, hub.url, "release")
        release.env["AETHERFS_HUB_TOKEN"] = writer
        refs = ("team/geo-db:canary", "team/new:stable")
        agent = AgentProcess(
            host,
            tmp_path / "root",
            ["--subscribe", refs[0], "--subscribe", refs[1], *SLOW_POLL],
            tmp_path / "agent.log",
        )
        try:
            agent.start()
            snap = agent.wait_for(
                lambda s: all(c["state"] == "waiting" for c in s["subscriptions"]), "waiting"
            )
            assert all(c["last_error"] is None for c in snap["subscriptions"])
            agent.wait_for(lambda s: _stream(s).get("connected") is True, "the stream connected")
            time.sleep(2)
            moved_at = time.monotonic()
            release("tag", "team/geo-db:1.1.0", "canary", "--hub", hub.url)
            agent.wait_live(refs[0], v2, timeout=15)
            assert time.monotonic() - moved_at < 10
            manifest = push(cli, src, "team/new:1.0.0", "stable")  # the admin, on the store
            moved_at = time.monotonic()
            agent.wait_live(refs[1], manifest, timeout=20)
            assert time.monotonic() - moved_at < 12, "the stream of a new dataset backed off"
            assert agent.channel(refs[0])["state"] == "idle"
            assert agent.stop() == 0
        finally:
            agent.close()
