"""The store (a real SeaweedFS) goes away and comes back: the agent keeps serving its live
version, says it is retrying, and catches up when the store returns."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import AgentFactory, push, tree, write_dataset
from tests.conftest import Cli
from tests.fixtures.ports import free_port
from tests.fixtures.seaweedfs import run_seaweedfs


@pytest.mark.slow
@pytest.mark.s3
def test_store_goes_away_and_comes_back(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    data = tmp_path / "weed"
    data.mkdir()
    ports = (free_port(), free_port(), free_port(), free_port())
    src = tmp_path / "src"
    write_dataset(src, 1, big=500_000)
    with run_seaweedfs(data, ports) as server:
        local_store.env["AETHERFS_STORE"] = server.store_url()
        local_store.env["AETHERFS_S3_ENDPOINT"] = server.endpoint
        v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
        agent = agents("--subscribe", "team/geo-db:stable")
        agent.wait_live("team/geo-db:stable", v1)

    # The store is gone: status says so, retries back off, the live version is still served.
    snap = agent.wait_for(
        lambda s: s["subscriptions"][0]["retries"] >= 2, "retries while the store is down", 90
    )
    ch = snap["subscriptions"][0]
    assert ch["state"] == "retrying" and ch["live"]["manifest"] == v1
    assert "StoreUnavailable" in ch["last_error"] and ch["next_retry"] is not None
    assert snap["agent"]["store_reachable"] is False
    assert tree(agent.data_root / "team/geo-db/stable") == tree(src)
    body = httpx.get(f"{agent.url}/files/team/geo-db/stable/big.bin", timeout=10).content
    assert body == (src / "big.bin").read_bytes()
    out = local_store("status", "--data-root", str(agent.data_root)).out
    assert "unreachable: retrying" in out

    with run_seaweedfs(data, ports):
        (src / "sub/small.txt").write_text("after the outage\n")
        v2 = push(local_store, src, "team/geo-db:1.1.0", "stable")
        snap = agent.wait_live("team/geo-db:stable", v2, timeout=60)
        snap = agent.wait_for(
            lambda s: s["subscriptions"][0]["retries"] == 0, "a clean check after recovery"
        )
        assert snap["agent"]["store_reachable"] is True
        assert (agent.data_root / "team/geo-db/stable/sub/small.txt").read_text() == (
            "after the outage\n"
        )
        assert agent.stop() == 0
