"""Mistaken arguments and closed pipes end the way a CLI should: a usage error, or quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aetherfs.core.chunking import DEFAULT_PARAMS
from aetherfs.ops.cutter import _U32, _pack_params
from tests.conftest import Cli


@pytest.mark.parametrize("value", ["0", "-3", "many"])
@pytest.mark.parametrize("command", ["push", "pull"])
def test_workers_must_be_a_positive_count(
    cli: Cli, tmp_path: Path, command: str, value: str
) -> None:
    args = [str(tmp_path), "geo:1.0.0"] if command == "push" else ["geo:1.0.0", str(tmp_path)]
    result = cli(command, *args, "--workers", value, check=False)
    assert result.code == 2, result.err  # argparse's usage error
    assert "--workers" in result.err and "Traceback" not in result.err
    assert "usage: aetherfs" in result.err


def test_output_into_a_closed_pipe_ends_quietly(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4000):  # about 300 KB of `inspect` lines: far more than a pipe holds
        (src / f"file-{i:05d}.txt").write_text(str(i))
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    cli("push", str(src), "geo:1.0.0")
    producer = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "inspect", "geo:1.0.0"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert producer.stdout is not None and producer.stderr is not None
    head = subprocess.run(["head", "-n", "1"], stdin=producer.stdout, capture_output=True)
    producer.stdout.close()
    err = producer.stderr.read().decode()
    assert producer.wait(60) == 141, err  # 128 + SIGPIPE, as the shell reports a CLI's end
    assert err == ""
    assert head.stdout.startswith(b"geo:1.0.0 -> manifest")


def test_chunking_child_exits_quietly_when_push_is_gone(tmp_path: Path) -> None:
    """What push's cutter child sees after a kill -9 of push: its answers go nowhere."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    child = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.ops.cutter"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone, as when push is killed
    name = bytes(big)
    child.stdin.write(_U32.pack(len(name)) + name + _pack_params(DEFAULT_PARAMS))
    child.stdin.close()
    assert child.wait(60) == 0
    assert child.stderr.read() == b""
