"""A live version costs about its own size on disk, and peers are still served all of it: real
agent processes, peers on loopback with static addresses (no mDNS leaves the host)."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import STABLE, AgentProcess, push, tree
from tests.conftest import Cli
from tests.fixtures.cache_index import cached_blocks
from tests.fixtures.ports import free_port


def du(*tops: Path) -> int:
    """Bytes allocated under `tops`, each inode once (as `du` counts hard links)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in tops:
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def write_version(src: Path, seed: int) -> None:
    """12 MB: random bytes (stored raw) and text (stored compressed, so sealing it again
    must reproduce zstd's bytes)."""
    rng = random.Random(seed)
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "random.bin").write_bytes(rng.randbytes(8_000_000))
    words = [rng.randbytes(5).hex() for _ in range(500)]
    (src / "sub/text.txt").write_text(" ".join(rng.choice(words) for _ in range(400_000)))


class Agents:
    def __init__(self, cli: Cli, tmp_path: Path) -> None:
        self.cli, self.tmp_path = cli, tmp_path
        self.started: list[AgentProcess] = []

    def start(self, name: str, *args: str, peers: bool = False) -> AgentProcess:
        agent = AgentProcess(
            self.cli,
            self.tmp_path / name,
            ["--poll-interval", "0.2", "--retry-max", "1", *args],
            self.tmp_path / f"{name}-{len(self.started)}.log",
            peers=peers,
        )
        self.started.append(agent)
        return agent.start()


@pytest.fixture
def fleet(local_store: Cli, tmp_path: Path) -> Iterator[Agents]:
    agents = Agents(local_store, tmp_path)
    yield agents
    for agent in agents.started:
        agent.close()


def trimmed(snap: dict[str, Any]) -> bool:
    return snap["cache"]["blocks"] == 0 and bool(snap["subscriptions"][0]["live"])


def test_a_live_version_costs_about_its_size_on_disk(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_version(src, 1)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    agent = fleet.start("a", "--subscribe", STABLE, "--cache-linger", "0", "--no-peers")
    agent.wait_live(STABLE, v1)
    snap = agent.wait_for(trimmed, "the cache trimmed of what the tree serves")
    root = agent.data_root
    size = du(src)
    on_disk = du(root / ".versions", root / ".agent/cache/segments")
    # Before: the tree and the cache each held a copy (2x, less what zstd saved the cache).
    assert on_disk <= 1.02 * size, (on_disk, size)
    assert du(root) <= size + 2 * 1024 * 1024  # records, the cache's index, sockets
    assert snap["trees"]["bytes"] == du(root / ".versions")
    assert snap["cache"]["disk_bytes"] == du(root / ".agent/cache")
    assert "event=cache.trimmed" in agent.log()
    assert tree(root / "team/geo-db/stable") == tree(src)
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as client:
        metrics = client.get("/metrics").text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert values['aetherfs_agent_disk_bytes{part="trees"}'] == snap["trees"]["bytes"]
    assert 'aetherfs_agent_served_blocks_total{source="tree"} 0.0' in metrics
    out = local_store("status", "--data-root", str(root)).out
    assert "disk: trees 11.8 MiB" in out and "0 sealed again from trees" in out, out


def test_a_lingering_cache_keeps_its_copy_while_peers_may_ask(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_version(src, 1)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    agent = fleet.start("a", "--subscribe", STABLE, "--cache-linger", "3600", "--no-peers")
    agent.wait_live(STABLE, v1)
    # The rollout may still want them as stored. (Status counts the cache once the switch has
    # collected, a moment after the version is live.)
    agent.wait_for(lambda s: s["cache"]["blocks"] > 0, "the cache counted", timeout=10)
    root = agent.data_root
    # Two copies meanwhile, as every live version cost before (the cache's is smaller: zstd).
    assert du(root / ".versions", root / ".agent/cache/segments") > 1.5 * du(src)


def peer_pair(fleet: Agents, b_store: str) -> tuple[AgentProcess, tuple[str, ...]]:
    """Agent `a` (peers on, its cache trimmed at once) and the arguments for `b`."""
    pa, pb = free_port(), free_port()
    common = ["--subscribe", STABLE, "--no-mdns"]
    a = fleet.start(
        "a", *common, "--cache-linger", "0", "--peer-listen", f"127.0.0.1:{pa}",
        "--peer", f"127.0.0.1:{pb}", peers=True,
    )  # fmt: skip
    b_args = (
        *common, "--store", b_store, "--peer-listen", f"127.0.0.1:{pb}",
        "--peer", f"127.0.0.1:{pa}",
    )  # fmt: skip
    return a, b_args


def start_b(fleet: Agents, args: tuple[str, ...]) -> AgentProcess:
    return fleet.start("b", *args, peers=True)


def fetch_of(snap: dict[str, Any], manifest: str) -> dict[str, Any]:
    return next(f for f in snap["fetches"] if f["manifest"] == manifest)


def test_a_peer_gets_every_piece_from_an_agent_whose_cache_was_trimmed(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_version(src, 1)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    # b's store has the tags and manifests but no pack: every block must come from a.
    store = tmp_path / "store"
    packless = tmp_path / "packless"
    shutil.copytree(store, packless)
    shutil.rmtree(packless / "packs")
    a, b_args = peer_pair(fleet, packless.as_uri())
    a.wait_live(STABLE, v1)
    a.wait_for(trimmed, "a's cache trimmed")
    b = start_b(fleet, b_args)
    snap = b.wait_live(STABLE, v1, timeout=60)
    assert tree(b.data_root / "team/geo-db/stable") == tree(src)
    fetched = fetch_of(snap, v1)
    assert fetched["bytes"]["store"] == 0 and fetched["bytes"]["peers"] > 0
    served = a.status()["served"]
    assert served["tree_blocks"] > 0 and served["cache_blocks"] == 0
    assert served["tree_bytes"] == fetched["bytes"]["peers"]
    assert served["altered"] == served["mismatched"] == 0


def test_a_tree_altered_on_disk_is_not_served_and_the_peer_reads_the_store(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_version(src, 1)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    a, b_args = peer_pair(fleet, (tmp_path / "store").as_uri())
    a.wait_live(STABLE, v1)
    a.wait_for(trimmed, "a's cache trimmed")
    victim = a.data_root / "team/geo-db/stable/sub/text.txt"
    victim.chmod(0o644)  # root could write it anyway; the agent must not trust its tree
    with victim.open("r+b") as f:
        f.seek(1_000_000)
        f.write(b"#")
    b = start_b(fleet, b_args)
    snap = b.wait_live(STABLE, v1, timeout=60)
    assert tree(b.data_root / "team/geo-db/stable") == tree(src)
    fetched = fetch_of(snap, v1)
    assert fetched["bytes"]["store"] > 0  # the altered piece, at least
    assert fetched["bytes"]["peers"] > 0  # the rest from a's tree
    served = a.status()["served"]
    assert served["altered"] >= 1 and served["tree_blocks"] > 0
    assert "event=peers.tree_altered" in a.log()


def test_a_build_killed_mid_fetch_with_peers_on_fetches_only_what_it_lacks(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    """The swarm sinks each piece whole into the cache, and a version being built pins its
    blocks there (nothing is trimmed or evicted while a build runs): after kill -9 the
    restarted agent takes what it fetched from the cache and reads only the rest."""
    src = tmp_path / "src"
    write_version(src, 1)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    args = (
        "--subscribe", STABLE, "--no-mdns", "--peer-listen", f"127.0.0.1:{free_port()}",
        "--store-rate", "2M", "--cache-linger", "0",
    )  # fmt: skip
    a = fleet.start("a", *args, peers=True)
    cache = a.data_root / ".agent/cache"
    deadline = time.monotonic() + 30
    while not cached_blocks(cache):
        assert time.monotonic() < deadline, a.log()
        time.sleep(0.02)
    assert a.channel(STABLE)["state"] == "downloading"
    a.kill()
    cached = cached_blocks(cache)
    cached_bytes = sum(b.size for b in cached.values())

    again = fleet.start("a", *args, peers=True)
    snap = again.wait_live(STABLE, v1, timeout=60)
    assert tree(again.data_root / "team/geo-db/stable") == tree(src)
    fetched = fetch_of(snap, v1)
    assert fetched["bytes"]["cache"] == cached_bytes > 0
    assert fetched["bytes"]["store"] + cached_bytes <= du(tmp_path / "store/packs")
