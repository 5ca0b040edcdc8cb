"""A version's sealed manifest comes from a peer before the store: two real agents on
loopback, static peers, no mDNS. The second agent's store has no copy of the manifest at
all, so a store read of it would fail its build."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from aetherfs.core.ids import ManifestId
from aetherfs.store.layout import manifest_key
from tests.agent.conftest import STABLE, push, tree
from tests.agent.test_disk import Agents, fetch_of, fleet, peer_pair, start_b, write_version
from tests.conftest import Cli

__all__ = ["fleet"]  # the fixture, used by name


def first_version(cli: Cli, tmp_path: Path, seed: int = 1) -> tuple[Path, str]:
    """A 12 MB version published as team/geo-db:1.SEED.0 on stable: its tree and its id."""
    src = tmp_path / f"src{seed}"
    write_version(src, seed)
    return src, push(cli, src, f"team/geo-db:1.{seed}.0", "stable")


def store_without(tmp_path: Path, name: str, manifests: list[str]) -> Path:
    """A copy of the test's store without these manifests (a read of one would fail)."""
    copy = tmp_path / name
    shutil.copytree(tmp_path / "store", copy)
    for manifest in manifests:
        (copy / manifest_key(ManifestId.from_hex(manifest))).unlink()
    return copy


def sealed_of(tmp_path: Path, manifest: str) -> bytes:
    return (tmp_path / "store" / manifest_key(ManifestId.from_hex(manifest))).read_bytes()


def test_the_second_agent_gets_the_manifest_from_the_first_and_not_the_store(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    src, v1 = first_version(local_store, tmp_path)
    nomanifest = store_without(tmp_path, "nomanifest", [v1])
    sealed = sealed_of(tmp_path, v1)

    a, b_args = peer_pair(fleet, nomanifest.as_uri())
    a_snap = a.wait_live(STABLE, v1)
    assert fetch_of(a_snap, v1)["manifest_from"] == {"store": len(sealed)}
    kept = a.data_root / ".agent/manifests" / v1
    assert kept.read_bytes() == sealed  # kept on disk, served from there

    b = start_b(fleet, b_args)
    snap = b.wait_live(STABLE, v1, timeout=60)
    assert tree(b.data_root / "team/geo-db/stable") == tree(src)
    assert fetch_of(snap, v1)["manifest_from"] == {"peers": len(sealed)}
    assert (b.data_root / ".agent/manifests" / v1).read_bytes() == sealed
    assert "peers.manifest_refused" not in b.log()
    metrics = httpx.get(f"{b.url}/metrics", timeout=10).text
    assert (
        f'aetherfs_agent_version_manifest_bytes{{manifest="{v1}",source="peers"}} '
        f"{float(len(sealed))}" in metrics
    )
    assert all(p["errors"] == 0 for p in snap["peers"])


def test_a_delta_and_its_base_both_come_from_the_peer(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    src, v1 = first_version(local_store, tmp_path)
    a, b_args = peer_pair(fleet, (tmp_path / "nomanifests").as_uri())
    a.wait_live(STABLE, v1)
    (src / "new.txt").write_text("one more file\n")
    v2 = push(local_store, src, "team/geo-db:2.0.0", "stable")
    a.wait_live(STABLE, v2)
    store_without(tmp_path, "nomanifests", [v1, v2])
    v2_sealed = sealed_of(tmp_path, v2)
    assert len(v2_sealed) < len(sealed_of(tmp_path, v1))  # a delta on v1

    b = start_b(fleet, b_args)
    snap = b.wait_live(STABLE, v2, timeout=60)
    assert tree(b.data_root / "team/geo-db/stable") == tree(src)
    assert fetch_of(snap, v2)["manifest_from"] == {"peers": len(v2_sealed)}
    for manifest in (v1, v2):
        kept = b.data_root / ".agent/manifests" / manifest
        assert kept.read_bytes() == sealed_of(tmp_path, manifest)


def test_the_manifest_of_a_collected_version_leaves_the_state_dir(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    pushed = []
    agent = None
    for seed in (1, 2, 3):  # unrelated bytes: each manifest is a full one, no chain
        pushed.append(first_version(local_store, tmp_path, seed)[1])
        if agent is None:
            agent = fleet.start("a", "--subscribe", STABLE, "--no-mdns", peers=True)
        agent.wait_live(STABLE, pushed[-1])
    assert agent is not None
    shelf = agent.data_root / ".agent/manifests"
    agent.wait_for(lambda _s: not (shelf / pushed[0]).exists(), "v1's manifest dropped")
    assert (shelf / pushed[1]).exists() and (shelf / pushed[2]).exists()  # v2 kept, v3 live


def test_a_restarted_agent_opens_its_kept_versions_without_reading_their_manifests(
    fleet: Agents, local_store: Cli, tmp_path: Path
) -> None:
    _src, v1 = first_version(local_store, tmp_path)
    a = fleet.start("a", "--subscribe", STABLE, "--no-mdns", peers=True)
    a.wait_live(STABLE, v1)
    a.wait_for(lambda _s: "event=tree.indexed" in a.log(), "v1's tree indexed")
    assert a.stop() == 0
    # From here a read of v1's manifest from the store would fail: it must come from disk.
    (tmp_path / "store" / manifest_key(ManifestId.from_hex(v1))).unlink()
    a.start(wait=False)
    deadline = time.monotonic() + 30
    while a.log().count("event=agent.started") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    a.wait_for(lambda _s: a.log().count("event=tree.indexed") == 2, "v1 indexed again")
    time.sleep(1.0)  # a few polls: the live version is offered to peers (its manifest opened)
    snap = a.status()
    assert "tree.unindexed" not in a.log()
    assert snap["subscriptions"][0]["last_error"] is None
    assert snap["subscriptions"][0]["live"]["manifest"] == v1
