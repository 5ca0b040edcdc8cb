"""A file linked from the old tree and changed there during the pull is written afresh.

The pull runs in this process (so the test can act at a precise moment), on a store the real
CLI pushed to and a directory the real CLI pulled into.
"""

from __future__ import annotations

from pathlib import Path

from aetherfs.config import Settings
from aetherfs.fetch.sources import StoreSource
from aetherfs.ops.pull import pull_manifest, staging_path
from tests.cli.test_pull_fast import edit_middle, inodes, setup_v1_v2
from tests.cli.test_push_pull import tree
from tests.conftest import Cli
from tests.ops.test_faults import repository


def test_linked_file_changed_mid_pull_is_rewritten(cli: Cli, tmp_path: Path) -> None:
    src, out, before = setup_v1_v2(cli, tmp_path)
    repo = repository(cli)
    manifest_id = repo.resolve("geo", "2.0.0").record.manifest_id
    manifest = repo.get_manifest("geo", manifest_id)
    staged = staging_path(out.absolute()) / "data/keep1.bin"
    state_dir = Settings.from_env(cli.env).state_dir  # where the CLI recorded its pull
    edited: list[int] = []

    def meddle(_: int) -> None:
        # Once keep1.bin is linked into the staging tree, change it through the old tree.
        if not edited and staged.exists():
            edit_middle(out / "data/keep1.bin")
            edited.append(staged.stat().st_ino)

    result = pull_manifest(
        manifest,
        manifest_id,
        out,
        [StoreSource(repo, "geo")],
        None,
        workers=1,
        progress=meddle,
        state_dir=state_dir,
    )
    assert edited == [before["data/keep1.bin"]]  # it had been linked, then changed
    assert tree(out) == tree(src)
    assert result.linked_files == 5
    after = inodes(out)
    assert after["data/keep1.bin"] != before["data/keep1.bin"]
    assert after["data/keep2.bin"] == before["data/keep2.bin"]
    # The record vouches for the rewritten file as written: a repeat pull links every file.
    again = pull_manifest(
        manifest, manifest_id, out, [StoreSource(repo, "geo")], None, state_dir=state_dir
    )
    assert again.linked_files == 7 and again.counts.bytes.get("store", 0) == 0
    assert tree(out) == tree(src)
