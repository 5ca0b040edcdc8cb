"""Rollouts to five agents, each in its own network namespace, SeaweedFS in another: every agent
converges, and the store serves each piece about once per LAN (peers carry the rest)."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

from tests.fixtures.netns import wait_for
from tests.peers.conftest import DATASET, HOSTS, PEER_PORT, Fleet, LanAgent, producer_cli

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
    # Far from once per agent (5x). Not quite once: a4 knows only a0, so in its view (and in
    # a0's) the pieces are shared among different members than a1..a3 see; 12-13 reads of 8
    # pieces measured. (Hub hints, or a4 on mDNS, would give every agent one view.)
    assert pieces <= reads <= pieces * 2, (reads, pieces)
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
    # The unchanged pieces came from each agent's own disk: its live tree (local) or, for
    # blocks no tree holds, its cache. (Counted as cache before the trees served blocks.)
    held = [f["bytes"]["local"] + f["bytes"]["cache"] for f in fetches if f]
    assert min(held) > 0
    assert reads <= 3, (reads, pieces)  # about one new piece, read once for the LAN


def test_malformed_frames_from_a_raw_socket_end_that_connection_only(
    fleet: Fleet, running: list[LanAgent]
) -> None:
    a0 = running[0]
    peers_before = a0.open_peers()
    with socket.create_connection((a0.address, PEER_PORT), timeout=10) as raw:
        raw.sendall(b"\x00\x00\x00\x10\x07" + os.urandom(300))
        try:
            while raw.recv(4096):  # the agent answers with its hello, then closes
                pass
        except OSError:
            pass
    a0.wait_for(
        lambda s: any(
            r["address"].startswith(f"{fleet.lan.root_address}:")
            for r in s["peer_exchange"]["refused"]
        ),
        "the raw socket refused",
    )
    assert a0.open_peers() == peers_before


def test_an_agent_of_another_fleet_is_refused(fleet: Fleet, running: list[LanAgent]) -> None:
    other_root = fleet.root / "other"
    other = producer_cli(other_root / "home", (other_root / "store").as_uri())
    src = other_root / "v1"
    write_version(src, 7, 4)
    other("push", str(src), "other/data:1.0.0", "--tag", "stable")
    keys = other_root / "reader.json"
    other("keys", "export", "--reader", str(keys), "--dataset", "other/data")
    a0 = running[0]
    x = fleet.agent("x", "--subscribe", "other/data:stable", "--peer", f"{a0.address}:{PEER_PORT}")
    x.args[1] = (other_root / "store").as_uri()  # its own store and keyring
    x.args[3] = str(keys)
    x.start()
    x.wait_for(lambda s: any(ch["live"] for ch in s["subscriptions"]), "its own version live")
    a0.wait_for(
        lambda s: any(
            r["address"].startswith(f"{x.address}:") and r["reason"] == "not_admitted"
            for r in s["peer_exchange"]["refused"]
        ),
        "the other fleet's agent refused",
    )
    assert x.open_peers() == 0
    assert all(p["state"] == "open" for p in a0.status()["peers"] if p["address"] != x.address)
    fleet.lan.stop(x.proc)  # type: ignore[arg-type]


def test_an_agent_killed_mid_rollout_restarts_and_the_others_finish_without_it(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    """Links shaped so a rollout takes seconds; a1 is killed while it trades (its peers lose
    it mid-transfer) and started again: everyone converges, a1 keeping what it had."""
    for host in HOSTS:
        fleet.lan.shape(host, "60mbit")
    src = tmp_path / "v3"
    write_version(src, 3, 24)
    manifest = fleet.push(src, f"{DATASET}:3.0.0", "stable")
    a1 = running[1]

    def trading(snap: dict[str, object]) -> bool:
        for f in snap["fetches"]:  # type: ignore[attr-defined]
            if f["manifest"] == manifest:
                return bool(0 < f["pieces_needed"] < f["pieces"] - 1)
        return False

    a1.wait_for(trading, "a1 half way", timeout=30)
    fleet.lan.kill(a1.proc)  # type: ignore[arg-type]
    others = [a for a in running if a is not a1]
    wait_live(others, manifest)
    for agent in others:
        assert tree(agent.data_root / DATASET / "stable") == tree(src), agent.host
    a1.start()
    wait_live([a1], manifest)
    assert tree(a1.data_root / DATASET / "stable") == tree(src)
    again = a1.fetch(manifest)
    assert again is not None and again["bytes"]["cache"] > 0, again  # resumed, not refetched
