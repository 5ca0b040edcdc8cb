"""When the cache lets go of what the trees serve: not while peers read it from the cache, not
while a build runs, and then all of it; peers are still served, from the tree."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from aetherfs.agent.config import build_config
from aetherfs.agent.log import Logger
from aetherfs.agent.peers import CacheBlocks
from aetherfs.agent.state import AgentState
from aetherfs.agent.workspace import Workspace
from aetherfs.core.ids import ManifestId
from tests.agent.test_tree_blocks import stored, text, write_version

LINGER = 0.3
VERSION = ManifestId(b"\2" * 32)


def workspace(root: Path) -> Workspace:
    flags = {"data_root": str(root), "subscribe": ["team/geo-db:stable"], "cache_linger": LINGER}
    config = build_config({}, flags, {}, root, "file:///x")
    work = Workspace(config, AgentState(config), Logger())
    work.dataroot.prepare()
    return work


async def test_the_cache_lingers_while_peers_read_it_then_the_tree_serves(tmp_path: Path) -> None:
    work = workspace(tmp_path / "root")
    files = {"a.txt": [(text(1), 1), (text(2), 1)], "b.txt": [(text(3), 1)]}
    manifest = write_version(work.dataroot.version_dir(VERSION), files)
    blocks = stored(files)
    work.cache.put_many(list(blocks.items()))
    await work.index_version(VERSION, manifest)
    work.switched_at = time.monotonic()  # as `collect` does after the switch
    served = CacheBlocks(work)
    ids = list(blocks)

    await work.trim()
    assert len(work.cache.has(ids)) == 3  # just live: kept for the rollout
    await trio.sleep(LINGER * 0.7)
    assert served.read(ids) == list(blocks.values())  # a peer reads them from the cache
    await trio.sleep(LINGER * 0.7)
    await work.trim()
    assert len(work.cache.has(ids)) == 3  # read under LINGER ago: still kept

    await trio.sleep(LINGER * 1.2)
    work.building = 1  # a build may need them, and its own blocks are in the cache
    await work.trim()
    assert len(work.cache.has(ids)) == 3
    work.building = 0
    await work.trim()
    assert work.cache.has(ids) == set()  # quiet for LINGER: the tree is the copy kept
    assert work.state.cache_evicted_bytes == sum(len(b) for b in blocks.values())
    assert served.read(ids) == list(blocks.values())  # sealed again from the tree
    counts = work.trees.served()
    assert counts["cache_blocks"] == 3 and counts["tree_blocks"] == 3
