"""Rollouts to five agents, each in its own network namespace, SeaweedFS in another: every agent
converges, and the store serves each piece about once per LAN (peers carry the rest), also
with one host's mDNS blocked, a peer sending corrupt blocks, and a serving peer killed.

The cases run in order on one LAN and one set of agents (the module's), each a new version."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.netns import wait_for
from tests.peers.conftest import (
    DATASET,
    HOSTS,
    PEER_PORT,
    STABLE,
    Fleet,
    LanAgent,
    converged,
    producer_cli,
    write_version,
)

HOSTILE = "hostile-flipper"  # the agent name tests/fixtures/hostile_peer.py gives itself
pytestmark = pytest.mark.slow


def fetches(agents: list[LanAgent], manifest: str) -> list[dict[str, Any]]:
    found = [agent.fetch(manifest) for agent in agents]
    assert all(f is not None for f in found), found
    return [f for f in found if f is not None]


def store_reads(agents: list[LanAgent], manifest: str) -> tuple[int, int]:
    """Store reads of the version over all agents, and its piece count."""
    found = fetches(agents, manifest)
    return sum(f["store_reads"] for f in found), max(f["pieces"] for f in found)


def roll_out(fleet: Fleet, src: Path, version: str) -> tuple[str, int]:
    """Push `src` as `version`, then point stable at it; returns its manifest and the bytes
    the store's namespace sent from just before stable moved until every agent is live
    (the push's own traffic is left out: it is the producer's)."""
    manifest = fleet.push(src, f"{DATASET}:{version}")
    before = fleet.store_sent()
    fleet.cli("tag", f"{DATASET}:{version}", "stable")
    return manifest, before


def serving_half_way(agents: list[LanAgent], manifest: str) -> LanAgent:
    """The first of `agents` seen uploading to its peers while it still lacks pieces of
    `manifest` itself (and holds some)."""

    def seen(agent: LanAgent) -> bool:
        snap = agent.status()
        mine = next((f for f in snap["fetches"] if f["manifest"] == manifest), None)
        return (
            mine is not None
            and 0 < mine["pieces_needed"] < mine["pieces"] - 1
            and snap["peer_exchange"]["uploads_running"] > 0
        )

    found: list[LanAgent] = []
    assert wait_for(
        lambda: bool(found.extend(a for a in agents if seen(a)) or found), 30, interval=0.02
    ), "no agent was seen serving half way"
    return found[0]


@pytest.fixture(scope="module")
def running(fleet: Fleet) -> Iterator[list[LanAgent]]:
    """Five agents subscribed to stable before it exists. a4's mDNS is blocked (nftables
    drops multicast in and out of its namespace), so it finds its peers only by the static
    addresses it is given; the others find each other by mDNS and a4 when it calls."""
    fleet.lan.block_multicast("a4")
    agents = [fleet.agent(h, "--subscribe", STABLE) for h in HOSTS[:4]]
    static = [a for h in HOSTS[:4] for a in ("--peer", f"{fleet.lan[h].address}:{PEER_PORT}")]
    agents.append(fleet.agent("a4", "--subscribe", STABLE, *static))
    for agent in agents:
        agent.start(wait=False)
    for agent in agents:
        agent.wait_started()
    assert wait_for(lambda: all(a.open_peers() >= 4 for a in agents), 30), {
        a.host: a.status()["peers"] for a in agents
    }
    yield agents
    for agent in agents:  # the next module's agents need the cores
        if agent.proc is not None:
            fleet.lan.kill(agent.proc)


def test_a_rollout_converges_and_the_store_serves_each_piece_about_once(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    src = tmp_path / "v1"
    write_version(src, 1, 24)
    manifest, before = roll_out(fleet, src, "1.0.0")
    converged(running, manifest, src)
    egress = fleet.store_sent() - before
    reads, pieces = store_reads(running, manifest)
    found = fetches(running, manifest)
    size = max(sum(f["bytes"].values()) for f in found)  # the version's stored bytes
    from_store = sum(f["bytes"]["store"] for f in found)
    print(f"store: {reads} reads of {pieces} pieces, sent {egress / size:.3f}x the version")
    assert pieces >= 6
    assert pieces <= reads <= pieces + 1, (reads, pieces)  # once per piece, not once per agent
    assert from_store <= size * (reads / pieces) + 1
    # What left the store's interface: the pieces read, TCP/IP and HTTP around them, and
    # five agents' tag polls; far from the 5x of agents that each read the store.
    assert size <= egress <= 1.2 * size, (egress, size)
    # a4 (mDNS blocked, static peers) traded with peers too.
    a4 = running[-1]
    assert a4.fetch(manifest)["bytes"]["peers"] > 0  # type: ignore[index]
    assert a4.status()["peer_exchange"]["mdns"] is True
    snap = running[0].status()
    assert {p["state"] for p in snap["peers"]} == {"open"}


def test_a_delta_rollout_reads_only_the_new_pieces_once(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    v1 = running[0].live(STABLE)
    assert v1 is not None, "runs after the full rollout"
    src = tmp_path / "v2"
    write_version(src, 1, 24)
    (src / "part-2.bin").write_bytes(random.Random(2).randbytes(4 << 20))  # one file of six
    manifest, before = roll_out(fleet, src, "1.1.0")
    converged(running, manifest, src)
    egress = fleet.store_sent() - before
    reads, _pieces = store_reads(running, manifest)
    found = fetches(running, manifest)
    assert all(f["pieces_needed"] == 0 for f in found)
    # The unchanged pieces came from each agent's own disk: its live tree (local) or, for
    # blocks no tree holds, its cache.
    assert min(f["bytes"]["local"] + f["bytes"]["cache"] for f in found) > 0
    new = max(f["bytes"]["peers"] + f["bytes"]["store"] for f in found)
    print(f"delta: {reads} store reads, store sent {egress / new:.3f}x the new bytes")
    assert reads <= 3, reads  # about one new piece, read once for the LAN
    assert egress <= 1.2 * new * reads + 512 * 1024, (egress, new)


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
    store_url = fleet.store_url + "-other"  # a store of its own on the same SeaweedFS
    endpoint = fleet.cli.env["AETHERFS_S3_ENDPOINT"]
    other = producer_cli(other_root / "home", store_url, endpoint)
    src = other_root / "v1"
    write_version(src, 7, 4)
    other("push", str(src), "other/data:1.0.0", "--tag", "stable")
    keys = other_root / "reader.json"
    other("keys", "export", "--reader", str(keys), "--dataset", "other/data")
    a0 = running[0]
    x = fleet.agent(
        "x",
        *("--store", store_url, "--keys", str(keys), "--subscribe", "other/data:stable"),
        *("--peer", f"{a0.address}:{PEER_PORT}"),
        cli=other,
    )
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


def test_a_peer_sending_corrupt_blocks_is_dropped_and_avoided(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    """A peer of the fleet (the fleet secret admits it, it proves the dataset) offers the
    whole next version before anyone else holds it and serves every block with a byte
    flipped: each agent that asks it drops it at the first bad block and bans it (it keeps
    calling back, and stays dropped); every agent converges with the right bytes."""
    src = tmp_path / "v3"
    write_version(src, 3, 16)
    manifest = fleet.push(src, f"{DATASET}:3.0.0")
    h = fleet.lan["h"]
    argv = [
        sys.executable, "-m", "tests.fixtures.hostile_peer",
        "--store", fleet.store_url, "--keys", str(fleet.keys), "--dataset", DATASET,
        "--manifest", manifest, "--listen", f"{h.address}:{PEER_PORT}",
        *(a for agent in running for a in ("--peer", f"{agent.address}:{PEER_PORT}")),
    ]  # fmt: skip
    hostile = fleet.lan.start("h", argv, env=fleet.cli.env, stderr=subprocess.STDOUT)
    assert hostile.stdout is not None
    ready = hostile.stdout.readline()
    try:
        said = json.loads(ready)
    except ValueError:
        rest = hostile.communicate(timeout=30)[0] or b""  # it has failed: its traceback
        raise AssertionError(f"the hostile peer did not start: {(ready + rest).decode()}") from None
    assert said["pieces"] >= 4, ready
    for agent in running:  # it is everyone's peer, holding every piece of the new version
        agent.wait_for(
            lambda s: any(p["agent"] == HOSTILE and p["state"] == "open" for p in s["peers"]),
            "the hostile peer connected",
        )
    fleet.cli("tag", f"{DATASET}:3.0.0", "stable")
    converged(running, manifest, src)
    rows = {a.host: a.peer_row(HOSTILE) for a in running}
    banned = {h: r for h, r in rows.items() if r and r["state"] == "banned"}
    assert banned, rows
    for row in banned.values():
        assert row["errors"] >= 1, row
        assert row["last_error"] == "dropped: sent a block that does not match its id", row
    # Nobody took a block from it, and it stays dropped though it calls again (every 2 s).
    assert all(r is None or r["state"] != "open" for r in rows.values()), rows
    assert hostile.poll() is None
    fleet.lan.kill(hostile)
    for agent in running:
        assert all(p["state"] == "open" for p in agent.status()["peers"] if p["agent"] != HOSTILE)


def test_a_serving_agent_killed_mid_rollout_restarts_and_the_others_finish_without_it(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    """Links shaped so a rollout takes seconds; an agent is killed (SIGKILL) while it
    uploads to its peers and still lacks pieces itself: its peers lose it mid-transfer and
    take what it owed them from others or the store; started again, it finishes from its
    cache and its peers, and everyone converges."""
    for host in HOSTS:
        fleet.lan.shape(host, "60mbit")
    ids = {a.host: a.status()["peer_exchange"]["agent_id"] for a in running}
    src = tmp_path / "v4"
    write_version(src, 4, 24)
    manifest, _ = roll_out(fleet, src, "4.0.0")

    victim = serving_half_way(running[:4], manifest)
    fleet.lan.kill(victim.proc)  # type: ignore[arg-type]
    others = [a for a in running if a is not victim]
    converged(others, manifest, src)
    for agent in others:
        row = agent.peer_row(ids[victim.host])
        assert row is not None and row["state"] == "gone", (agent.host, row)
    victim.start()
    converged([victim], manifest, src)
    again = victim.fetch(manifest)
    assert again is not None and again["bytes"]["cache"] > 0, again  # resumed, not refetched
    # Cut off mid-block is not a bad block: its peers take it back (it was banned for good).
    assert wait_for(
        lambda: all(
            (agent.peer_row(ids[victim.host]) or {}).get("state") == "open" for agent in others
        ),
        20,
    ), [agent.peer_row(ids[victim.host]) for agent in others]


def test_a_serving_agent_that_goes_silent_is_noticed_and_the_others_finish(
    fleet: Fleet, running: list[LanAgent], tmp_path: Path
) -> None:
    """Mid-rollout, an agent serving its peers vanishes without a word: its namespace drops
    every packet (no FIN, no RST, as a pulled cable). Its peers notice within the idle and
    progress timeouts (10 s), take what it owed them from others or the store, and finish;
    back on the LAN, it finishes too."""
    ids = {a.host: a.status()["peer_exchange"]["agent_id"] for a in running}
    src = tmp_path / "v5"
    write_version(src, 5, 24)
    manifest, _ = roll_out(fleet, src, "5.0.0")
    victim = serving_half_way(running[:4], manifest)
    fleet.lan.isolate(victim.host)
    gone_at = time.monotonic()
    others = [a for a in running if a is not victim]
    try:
        assert wait_for(
            lambda: all(
                (a.peer_row(ids[victim.host]) or {}).get("state") == "gone" for a in others
            ),
            25,
        ), [a.peer_row(ids[victim.host]) for a in others]
        noticed = time.monotonic() - gone_at
        print(f"silent peer noticed by all four after {noticed:.1f} s")
        assert noticed < 15
        converged(others, manifest, src)
    finally:
        fleet.lan.rejoin(victim.host)
    converged([victim], manifest, src)
