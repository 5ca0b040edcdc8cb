"""Rollouts to five agents, each in its own network namespace, SeaweedFS in another: every agent
converges, and the store serves each piece about once per LAN (peers carry the rest)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fixtures.netns import wait_for
from tests.peers.conftest import DATASET, HOSTS, PEER_PORT, Fleet, LanAgent

STABLE = f"{DATASET}:stable"
pytestmark = pytest.mark.slow


def write_version(root: Path, seed: int, mib: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(mib // 4):
        (root / f"part-{i}.bin").write_bytes(rng.randbytes(4 << 20))
    (root / "VERSION").write_text(f"{seed}\n")


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wait_live(agents: list[LanAgent], manifest: str, timeout: float = 60) -> None:
    for agent in agents:
        agent.wait_for(
            lambda s: any(
                ch["live"] and ch["live"]["manifest"] == manifest for ch in s["subscriptions"]
            ),
            f"{STABLE} live at {manifest[:12]}",
            timeout,
        )


def store_reads(agents: list[LanAgent], manifest: str) -> tuple[int, int]:
    """Store reads of the version over all agents, and its piece count."""
    fetches = [agent.fetch(manifest) for agent in agents]
    assert all(f is not None for f in fetches), fetches
    return sum(f["store_reads"] for f in fetches if f), max(f["pieces"] for f in fetches if f)


@pytest.fixture(scope="module")
def running(fleet: Fleet) -> list[LanAgent]:
    """Five agents subscribed to stable before it exists; a4 behind a firewall that drops
    multicast (mDNS cannot reach it), told of a0 as a static peer."""
    fleet.lan.block_multicast("a4")
    agents = [fleet.agent(h, "--subscribe", STABLE) for h in HOSTS[:4]]
    a0 = fleet.lan["a0"].address
    agents.append(
        fleet.agent("a4", "--subscribe", STABLE, "--no-mdns", "--peer", f"{a0}:{PEER_PORT}")
    )
    for agent in agents:
        agent.start()
    # a0..a3 find each other by mDNS; a4 reaches a0 only, and a0 counts it.
    wants = {"a0": 4, "a1": 3, "a2": 3, "a3": 3, "a4": 1}
    assert wait_for(lambda: all(a.open_peers() >= wants[a.host] for a in agents), 20), {
        a.host: a.status()["peers"] for a in agents
    }
    return agents


def test_a_rollout_converges_and_the_store_serves_each_piece_about_once(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    src = tmp_path / "v1"
    write_version(src, 1, 24)
    manifest = fleet.push(src, f"{DATASET}:1.0.0", "stable")
    wait_live(running, manifest)
    expected = tree(src)
    for agent in running:
        assert tree(agent.data_root / DATASET / "stable") == expected, agent.host
    reads, pieces = store_reads(running, manifest)
    assert pieces >= 6
    # About once per LAN, not once per agent (5x): a4 knows only a0, so in its view the pieces
    # are shared between the two of them and it reads its half itself.
    assert reads <= pieces * 1.6, (reads, pieces)
    # a4 (no mDNS, one static peer) got blocks from peers too.
    a4 = running[-1].fetch(manifest)
    assert a4 is not None and a4["bytes"]["peers"] > 0, a4
    snap = running[0].status()
    assert snap["bytes_by_source"]["peers"] + snap["bytes_by_source"]["store"] > 0
    assert {p["state"] for p in snap["peers"]} == {"open"}


def test_a_delta_rollout_reads_only_the_new_pieces_once(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    v1 = running[0].live(STABLE)
    assert v1 is not None, "runs after the full rollout"
    src = tmp_path / "v2"
    write_version(src, 1, 24)
    (src / "part-2.bin").write_bytes(random.Random(2).randbytes(4 << 20))  # one file of six
    manifest = fleet.push(src, f"{DATASET}:1.1.0", "stable")
    wait_live(running, manifest)
    for agent in running:
        assert tree(agent.data_root / DATASET / "stable") == tree(src), agent.host
    reads, pieces = store_reads(running, manifest)
    fetches = [a.fetch(manifest) for a in running]
    new = max(f["pieces_needed"] for f in fetches if f)  # 0 once complete; use bytes below
    assert new == 0
    held = [f["bytes"]["cache"] for f in fetches if f]
    assert min(held) > 0  # the unchanged pieces came from each agent's own cache
    assert reads <= 3, (reads, pieces)  # about one new piece, read once for the LAN
