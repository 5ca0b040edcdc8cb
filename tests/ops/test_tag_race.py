"""Two processes racing on one channel, on the local store and on SeaweedFS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_push_pull import make_tree
from tests.conftest import Cli
from tests.fixtures.seaweedfs import SeaweedFS


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_racing_tag_writers_lose_no_update(
    cli: Cli, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        cli.env["AETHERFS_STORE"] = server.store_url()
        cli.env["AETHERFS_S3_ENDPOINT"] = server.endpoint
    src = tmp_path / "src"
    make_tree(src, big=1000)
    versions = []
    for i in range(4):
        (src / "big.bin").write_bytes(f"version {i}".encode())
        cli("push", str(src), f"geo:1.0.{i}", "--no-latest")
        versions.append(f"1.0.{i}")
    moves = 3
    script = (
        "import sys\n"
        "from aetherfs.cli.main import main\n"
        f"for _ in range({moves}):\n"
        "    assert main(['tag', sys.argv[1], 'stable']) == 0\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, f"geo:{v}"], env=cli.env) for v in versions
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    history = json.loads(cli("tags", "geo", "--history", "--json").out)["stable"]
    seqs = [r["seq"] for r in history]
    assert seqs == list(range(1, len(seqs) + 1))  # strictly growing, no gaps, none lost
    # Re-tagging the manifest a channel already names records nothing, so each process
    # leaves at least one record, and every record names one of the versions.
    manifests = {json.loads(cli("inspect", f"geo:{v}", "--json").out)["manifest"] for v in versions}
    assert {r["manifest"] for r in history} == manifests
