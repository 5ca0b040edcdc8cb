"""The agent's trusted tag state outlives a restart: a replayed history is refused after one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.agent.conftest import AgentFactory, push, tree, write_dataset
from tests.conftest import Cli

SUB = "team/geo-db:stable"


def test_replay_is_refused_after_a_restart_until_reset(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_dataset(src, 1, big=20_000)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    history = tmp_path / "store/tags/team/geo-db/@stable"
    old_history = history.read_bytes()
    write_dataset(src, 2, big=20_000)
    v2 = push(local_store, src, "team/geo-db:2.0.0", "stable")

    agent = agents("--subscribe", SUB)
    agent.wait_live(SUB, v2)
    assert agent.stop() == 0
    trusted = list((agent.data_root / ".agent/trust").glob("*.json"))
    assert len(trusted) == 1
    assert json.loads(trusted[0].read_text())["tags"][SUB]["manifest"] == v2

    history.write_bytes(old_history)  # the store hands back seq 1, validly signed
    agent = agents("--subscribe", SUB)  # a new process on the same data root

    def refused(snap: dict[str, Any]) -> bool:
        for ch in snap["subscriptions"]:
            if ch["subscription"] == SUB and ch["last_error"]:
                return "at seq 1" in ch["last_error"] and "seq 2" in ch["last_error"]
        return False

    snap = agent.wait_for(refused, "the replayed record refused")
    (ch,) = [c for c in snap["subscriptions"] if c["subscription"] == SUB]
    assert ch["live"]["manifest"] == v2
    assert "aetherfs trust reset --data-root" in ch["last_error"]
    link = agent.data_root / "team/geo-db/stable"
    assert os.path.basename(os.readlink(link)) == v2
    assert tree(link) == tree(src)

    # The store was really reset: an admin (with no keyring of it) accepts it for this agent,
    # which takes the store as it is at its next check.
    admin = Cli({**local_store.env, "XDG_CONFIG_HOME": str(tmp_path / "admin")}, local_store.home)
    out = admin("trust", "reset", "--data-root", str(agent.data_root)).out
    assert "forgot 1 trusted tags" in out
    agent.wait_live(SUB, v1)
