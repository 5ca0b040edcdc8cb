"""gc removes what no tag ever named, spares what is young, and keeps every tagged version."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aetherfs.core.blocks import seal_block
from aetherfs.core.packs import PackBuilder
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.ops.test_faults import repository


def test_gc_removes_orphans_and_keeps_history(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    cli("push", str(src), "geo:1.0.0")
    first = tree(src)
    (src / "big.bin").write_bytes(os.urandom(500_000))
    cli("push", str(src), "geo:1.1.0")

    # An orphan, as a push killed after uploading a pack would leave.
    builder = PackBuilder()
    builder.add(seal_block(os.urandom(10_000), bytes(32)))
    pack_id, data, _ = builder.seal()
    repo = repository(cli)
    repo.put_pack("geo", pack_id, data)

    young = json.loads(cli("gc", "--json").out)
    assert young["removed_packs"] == []  # within the grace period
    dry = json.loads(cli("gc", "--grace", "0", "--dry-run", "--json").out)
    assert dry["removed_packs"] == [pack_id.hex()]
    assert repo.has_pack("geo", pack_id)
    done = json.loads(cli("gc", "--grace", "0", "--json").out)
    assert done["removed_packs"] == [pack_id.hex()]
    assert done["freed_bytes"] == len(data)
    assert not repo.has_pack("geo", pack_id)

    # Both versions, and the history behind `latest`, still pull.
    old = tmp_path / "old"
    cli("pull", "geo:1.0.0", str(old), "--no-cache")
    assert tree(old) == first
    new = tmp_path / "new"
    cli("pull", "geo:1.1.0", str(new), "--no-cache")
    assert tree(new) == tree(src)
