"""An agent subscribed to a channel nobody has published yet waits for it (state `waiting`, no
error, no backoff), so the first publish goes live within a poll interval. It used to be an
error backed off towards `retry_max` (60 s): the first publish took 38-39 s to go live."""

from __future__ import annotations

import time
from pathlib import Path

from tests.agent.conftest import STABLE, AgentFactory, push, write_dataset
from tests.conftest import Cli


def test_a_channel_not_published_yet_is_waited_for(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write_dataset(other, 9, big=10_000)
    push(local_store, other, "team/other:1.0.0")  # the store and its keyring exist
    agent = agents("--subscribe", STABLE, "--retry-max", "60")
    snap = agent.wait_for(
        lambda s: s["subscriptions"][0]["state"] == "waiting", "waiting for the channel"
    )
    time.sleep(4)  # backing off from 0.2 s, the old loop would now wait 3 s and more
    ch = agent.channel(STABLE)
    assert ch["state"] == "waiting" and ch["live"] is None
    assert ch["last_error"] is None and ch["retries"] == 0 and ch["next_retry"] is None
    assert snap["last_error"] is None and agent.status()["agent"]["store_reachable"] is True

    src = tmp_path / "src"
    write_dataset(src, 1, big=100_000)
    manifest = push(local_store, src, "team/geo-db:1.0.0", "stable")
    pushed = time.monotonic()
    agent.wait_live(STABLE, manifest, timeout=30)
    assert time.monotonic() - pushed < 2.0
    assert agent.channel(STABLE)["state"] == "idle"
