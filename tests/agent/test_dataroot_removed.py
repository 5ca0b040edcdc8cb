"""The data root removed under a running agent: said to be a local fault, recreated, rebuilt."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.agent.conftest import STABLE as REF
from tests.agent.conftest import AgentFactory, live_on_stable, tree
from tests.conftest import Cli


def test_data_root_removed_while_running_is_recreated_and_rebuilt(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    # A slow store read, so the rebuild lasts long enough to read status meanwhile.
    agent, v1 = live_on_stable(agents, local_store, src, 3_000_000, "--store-rate", "2M")
    agent.over_http = True  # the Unix socket goes with the data root
    shutil.rmtree(agent.data_root)

    def rebuilding(snap: dict[str, Any]) -> bool:
        ch = snap["subscriptions"][0]
        return ch["live"] is None and "DataRootLost" in (ch["last_error"] or "")

    snap = agent.wait_for(rebuilding, "the loss of the data root reported")
    ch = snap["subscriptions"][0]
    assert "local fault, not the store" in ch["last_error"]
    assert snap["agent"]["store_reachable"] is not False
    assert snap["versions"] == []  # none on disk until the rebuild is published

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
