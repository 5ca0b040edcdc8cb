"""The data root removed under a running agent: said to be a local fault, recreated, rebuilt."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.agent.conftest import AgentFactory, push, tree, write_dataset
from tests.conftest import Cli

REF = "team/geo-db:stable"


def test_data_root_removed_while_running_is_recreated_and_rebuilt(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_dataset(src, 1, big=3_000_000)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    # A slow store read, so the rebuild lasts long enough to read status meanwhile.
    agent = agents("--subscribe", REF, "--store-rate", "2M")
    agent.wait_live(REF, v1)
    agent.over_http = True  # the Unix socket goes with the data root
    shutil.rmtree(agent.data_root)

    def rebuilding(snap: dict[str, Any]) -> bool:
        ch = snap["subscriptions"][0]
        return ch["live"] is None and "DataRootLost" in (ch["last_error"] or "")

    snap = agent.wait_for(rebuilding, "the loss of the data root reported")
    ch = snap["subscriptions"][0]
    assert "local fault, not the store" in ch["last_error"]
    assert snap["agent"]["store_reachable"] is not False

    snap = agent.wait_live(REF, v1)
    link = agent.data_root / "team/geo-db/stable"
    assert snap["subscriptions"][0]["live"]["path"] == str(link)
    assert tree(link) == tree(src)
    assert snap["agent"]["store_reachable"] is True
    log = agent.log()
    after = log[log.index("event=dataroot.lost") :]
    assert "event=dataroot.recreated" in after
    assert "StoreUnavailable" not in after and "store unreachable" not in after
    # The lock is held again on the new layout: a second agent on the root is refused.
    second = agents("--subscribe", REF, start=False)
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(30) == 6
    assert "in use by another agent" in second.log()
