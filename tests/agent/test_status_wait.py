"""`aetherfs status --wait`: one process following the real agent's watch stream."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.agent.conftest import STABLE as REF
from tests.agent.conftest import AgentFactory, live_on_stable, push, write_dataset
from tests.conftest import Cli
from tests.fixtures.ports import free_port


def test_status_wait_until_live_at_a_manifest_and_timeouts(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    agent, v1 = live_on_stable(agents, local_store, src, 200_000, "--store-rate", "1M")
    root = str(agent.data_root)

    # Live already: it says so at once.
    done = local_store("status", "--data-root", root, "--wait", REF, "--timeout", "10")
    assert f"{REF} is live at {v1}" in done.out

    # A version not on the channel yet: the waiter follows until the move has gone live.
    write_dataset(src, 2, big=2_500_000)
    v2 = push(local_store, src, "team/geo-db:2.0.0")
    wait = ["--wait", REF, "--manifest", v2[:16], "--timeout", "60"]
    waiter = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "status", "--url", agent.url, *wait],
        env=local_store.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiter.stderr is not None
    first = waiter.stderr.readline()  # following the stream: the state now, v1 live
    assert f"live at {v1[:12]}" in first and f"waiting for {v2[:12]}" in first
    assert waiter.poll() is None
    local_store("tag", "team/geo-db:2.0.0", "stable")
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert f"{REF} is live at {v2}" in out
    assert "downloading" in err and "% of" in err  # progress while it was built
    assert agent.channel(REF)["live"]["manifest"] == v2

    # A manifest that never comes: its own exit code after the timeout, with the state.
    started = time.monotonic()
    late = local_store(
        "status",
        "--data-root",
        root,
        "--wait",
        REF,
        "--manifest",
        "00" * 32,
        "--timeout",
        "1",
        check=False,
    )
    assert late.code == 124, late.err
    assert time.monotonic() - started < 15
    assert "was not live at" in late.err and f"live at {v2[:12]}" in late.err

    # Errors that are not a timeout keep their own codes.
    other = local_store("status", "--data-root", root, "--wait", "team/other", check=False)
    assert other.code == 3 and "does not subscribe to team/other:latest" in other.err
    gone = local_store(
        "status", "--url", f"http://127.0.0.1:{free_port()}", "--wait", REF, check=False
    )
    assert gone.code == 7 and "no agent answers" in gone.err
