"""Materialised versions are read-only, and a retained version is checked (and put right)
before it goes live again or lends a file to a new version: real agent processes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.agent.conftest import STABLE as REF
from tests.agent.conftest import AgentFactory, live_on_stable, push, tree
from tests.conftest import Cli


def test_a_write_through_a_shared_file_never_goes_live_in_another_version(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    agent, v1 = live_on_stable(agents, local_store, src, 300_000, "--keep-versions", "2")
    v1_tree = tree(src)
    (src / "sub/small.txt").write_text("version 2\n")
    v2_tree = tree(src)
    v2 = push(local_store, src, "team/geo-db:1.1.0", "stable")
    agent.wait_live(REF, v2)
    root = agent.data_root
    live_big = root / "team/geo-db/stable/big.bin"
    old_big = root / ".versions" / v1 / "big.bin"
    assert live_big.stat().st_ino == old_big.stat().st_ino  # one copy, shared by a hard link
    for path in (root / ".versions" / v2).rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path

    # Without root's capabilities, the mode refuses the write.
    write = f"open({str(live_big)!r}, 'r+b').write(b'x')"
    refused = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", write],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert tree(root / "team/geo-db/stable") == v2_tree

    # Root ignores modes: the write reaches the retained version's copy too.
    with live_big.open("r+b") as f:
        f.write(b"corrupt!")
    assert old_big.read_bytes()[:8] == b"corrupt!"

    # A new version does not take the altered file as its own: it is written from blocks.
    (src / "sub/small.txt").write_text("version 3\n")
    v3_tree = tree(src)
    v3 = push(local_store, src, "team/geo-db:1.2.0", "stable")
    agent.wait_live(REF, v3)
    assert tree(root / "team/geo-db/stable") == v3_tree
    assert "event=version.link_refused" in agent.log()

    # Back to v1: checked before it goes live, its altered file repaired from the cache.
    local_store("tag", "team/geo-db:1.0.0", "stable")
    agent.wait_live(REF, v1)
    assert tree(root / "team/geo-db/stable") == v1_tree
    repaired = [line for line in agent.log().splitlines() if "event=version.repaired" in line]
    assert len(repaired) == 1 and "path=big.bin" in repaired[0] and v1 in repaired[0]
    assert agent.channel(REF)["files_repaired"] == 1

    # And forward to v2, whose copy is the one the application wrote: repaired too.
    local_store("tag", "team/geo-db:1.1.0", "stable")
    agent.wait_live(REF, v2)
    assert tree(root / "team/geo-db/stable") == v2_tree
    assert agent.channel(REF)["files_repaired"] == 2
    assert stat.S_IMODE(live_big.stat().st_mode) & 0o222 == 0
    out = local_store("status", "--data-root", str(root)).out
    assert "2 altered files of retained versions repaired" in out


def test_a_version_recorded_before_the_check_is_rehashed_once(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    agent, v1 = live_on_stable(agents, local_store, src, 100_000, "--keep-versions", "2")
    v1_tree = tree(src)
    (src / "sub/small.txt").write_text("version 2\n")
    v2 = push(local_store, src, "team/geo-db:1.1.0", "stable")
    agent.wait_live(REF, v2)
    assert agent.stop() == 0
    # As an older agent left it: no stats in the record, a file with its write bits.
    root = agent.data_root
    record = root / ".agent/versions" / f"{v1}.json"
    doc = json.loads(record.read_text())
    del doc["written"]
    record.write_text(json.dumps(doc))
    small = root / ".versions" / v1 / "sub/small.txt"
    small.chmod(0o644)

    again = agents("--subscribe", REF, "--keep-versions", "2")
    local_store("tag", "team/geo-db:1.0.0", "stable")
    again.wait_live(REF, v1)
    assert tree(root / "team/geo-db/stable") == v1_tree
    rechecked = [line for line in again.log().splitlines() if "event=version.rechecked" in line]
    assert sorted(line.split("path=")[1].split()[0] for line in rechecked) == [
        "big.bin",
        "sub/small.txt",
    ]
    assert again.channel(REF)["files_repaired"] == 0
    assert stat.S_IMODE(small.stat().st_mode) == 0o444
    assert set(json.loads(record.read_text())["written"]) == {"big.bin", "sub/small.txt"}
