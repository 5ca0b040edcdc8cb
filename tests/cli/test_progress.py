"""Progress bars appear on a terminal and stay out of pipes."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.conftest import Cli


def run_on_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """Run aetherfs with stderr on a pseudo-terminal; return its exit code and that output."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", *args],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    code, shown = run_on_terminal(cli, "push", str(src), "geo:1.0.0")
    assert code == 0
    assert "push geo:1.0.0" in shown and "%" in shown
    piped = cli("push", str(src), "geo:1.0.1")
    assert "%" not in piped.err
    code, shown = run_on_terminal(cli, "pull", "geo:1.0.0", str(tmp_path / "out"))
    assert code == 0 and "pull geo:1.0.0" in shown
