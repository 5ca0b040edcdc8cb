"""Start-up: a command imports only what it uses; the agent's and the hub's stacks stay out.

A fresh pull paid a quarter of a second of imports (trio, httpx, the agent's config, the hub's
JWT code) before the lazy imports of `aetherfs/cli/agent_cmd.py` and `hub_cmd.py`.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from tests.cli.test_push_pull import make_tree, store_cli, tree
from tests.conftest import Cli

__all__ = ["store_cli"]  # the fixture: every test here on the local store and on SeaweedFS

# Stacks of the daemon and the hub: none of them is needed to pull from a store. Nor is boto3
# (its S3 model takes 0.1 s to load): a pull's GETs take the short path (store/s3_ranges.py).
HEAVY = (
    "trio",
    "grpc",
    "fastapi",
    "starlette",
    "hypercorn",
    "httpx",
    "jwt",
    "zeroconf",
    "boto3",
    "s3transfer",
)

_PULL_AND_LIST = """
import json, sys
from aetherfs.cli.main import main
code = main(sys.argv[1:])
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def test_pull_imports_no_daemon_or_hub_stack(store_cli: Cli, tmp_path: Path) -> None:
    cli = store_cli
    src = tmp_path / "src"
    make_tree(src, big=200_000)
    cli("push", str(src), "team/small:1.0.0")
    dest = tmp_path / "dest"
    script = _PULL_AND_LIST.replace("HEAVY", repr(json.dumps(HEAVY)))
    done = subprocess.run(
        [sys.executable, "-c", script, "pull", "team/small:1.0.0", str(dest)],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, done.stderr
    assert tree(dest) == tree(src)


def test_help_lists_every_command(cli: Cli) -> None:
    """The agent's and the hub's commands are still in `--help`, each with its line."""
    out = cli("--help").out
    for command, words in [
        ("push", "publish a directory"),
        ("pull", "materialise a version"),
        ("agent", "run the agent daemon"),
        ("status", "what the local agent holds"),
        ("hub", "run the hub"),
        ("login", "check a hub token"),
    ]:
        assert any(line.split()[:1] == [command] and words in line for line in out.splitlines()), (
            f"{command} missing from --help:\n{out}"
        )


def test_pull_puts_what_start_up_made_out_of_the_collectors_sight(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=100_000)
    cli("push", str(src), "team/small:1.0.0")
    gc.unfreeze()
    try:
        assert cli.inproc("pull", "team/small:1.0.0", str(tmp_path / "dest")) == 0
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    assert tree(tmp_path / "dest") == tree(src)
