"""The agent keeps channels live: builds versions, shares unchanged files, switches atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.agent.conftest import AgentFactory, push, tree, write_dataset
from tests.conftest import Cli


def test_channel_moves_switch_atomically_and_share_unchanged_files(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src, other = tmp_path / "src", tmp_path / "other"
    write_dataset(src, 1)
    write_dataset(other, 7, big=10_000)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    o1 = push(local_store, other, "team/other:1.0.0")
    agent = agents(
        "--subscribe", "team/geo-db:stable", "--subscribe", "team/other", "--keep-versions", "1"
    )
    agent.wait_live("team/geo-db:stable", v1)
    agent.wait_live("team/other:latest", o1)
    root = agent.data_root
    link = root / "team/geo-db/stable"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert tree(link) == tree(src)
    assert tree(root / "team/other/latest") == tree(other)
    first_store_bytes = agent.status()["bytes_by_source"]["store"]
    assert first_store_bytes >= 2_000_000

    # v2 changes one small file: the big file is a hard link to v1's copy, not a new one.
    (src / "sub/small.txt").write_text("version 2\n")
    v2 = push(local_store, src, "team/geo-db:1.1.0", "stable")
    snap = agent.wait_live("team/geo-db:stable", v2)
    assert tree(link) == tree(src)
    big_v1 = root / ".versions" / v1 / "big.bin"
    big_v2 = root / ".versions" / v2 / "big.bin"
    assert big_v1.stat().st_ino == big_v2.stat().st_ino
    assert snap["bytes_by_source"]["store"] - first_store_bytes < 10_000

    # Two more moves with keep_versions=1: the live version and one old one remain.
    (src / "sub/small.txt").write_text("version 3\n")
    v3 = push(local_store, src, "team/geo-db:1.2.0", "stable")
    agent.wait_live("team/geo-db:stable", v3)
    (src / "sub/small.txt").write_text("version 4\n")
    v4 = push(local_store, src, "team/geo-db:1.3.0", "stable")
    agent.wait_live("team/geo-db:stable", v4)
    kept = {p.name for p in (root / ".versions").iterdir()}
    assert kept == {v4, v3, o1}
    assert tree(link) == tree(src)

    # The CLI reads the same status, human and JSON.
    out = local_store("status", "--data-root", str(root)).out
    assert "team/geo-db:stable" in out and v4[:12] in out and "bytes by source" in out
    doc = json.loads(local_store("status", "--data-root", str(root), "--json").out)
    assert {s["subscription"] for s in doc["subscriptions"]} == {
        "team/geo-db:stable",
        "team/other:latest",
    }
    assert agent.stop() == 0
    assert "event=agent.stopped" in agent.log()


def test_restart_keeps_live_version_and_fetches_nothing(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_dataset(src, 2)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    agent = agents("--subscribe", "team/geo-db:stable")
    agent.wait_live("team/geo-db:stable", v1)
    assert agent.stop() == 0
    again = agents("--subscribe", "team/geo-db:stable")
    snap = again.wait_live("team/geo-db:stable", v1)
    snap = again.wait_for(
        lambda s: s["subscriptions"][0]["last_check"] is not None, "a first check"
    )
    assert snap["bytes_by_source"]["store"] == 0
    assert "download.start" not in again.log()


def test_config_file(agents: AgentFactory, local_store: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_dataset(src, 3, big=1000)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    config = tmp_path / "agent.toml"
    config.write_text(
        """
subscribe = ["team/geo-db:stable", "team/geo-db:1.0.0"]
cache_limit = "64M"
keep_versions = 2
poll_interval = 0.2

[listen]
grpc_socket = ""
"""
    )
    agent = agents("--config", str(config))
    agent.wait_live("team/geo-db:stable", v1)
    snap = agent.wait_live("team/geo-db:1.0.0", v1)
    assert snap["cache"]["limit"] == 64 * 1024**2
    assert not agent.grpc_socket.exists()

    bad = tmp_path / "bad.toml"
    bad.write_text('subscribe = ["team/geo-db:stable"]\ncache_limt = "1G"\n')
    result = local_store(
        "agent", "--config", str(bad), "--data-root", str(tmp_path / "x"), check=False
    )
    assert result.code == 2 and "unknown agent settings: cache_limt" in result.err
