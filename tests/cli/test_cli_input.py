"""Mistaken arguments and closed pipes end the way a CLI should: a usage error, or quietly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def test_kill_9_of_push_leaves_no_child_traceback(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = src / "zeros.bin"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: cheap to make, about 2 s for the child to cut
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    push = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "push", str(src), "geo:1.0.0"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert push.stderr is not None
    deadline = time.monotonic() + 60
    cutting = False
    while time.monotonic() < deadline and push.poll() is None and not cutting:
        cutting = any(_has_open(child, big) for child in _children(push.pid))
        time.sleep(0.01)
    assert cutting, "the chunking child never opened the file"
    push.kill()  # kill -9 while the child is cutting: its answers now go nowhere
    push.wait(10)
    err = push.stderr.read().decode()  # the child holds push's stderr until it exits
    assert "Traceback" not in err and "Error" not in err, err
