"""Two pulls into one directory at once: the second fails at once naming the first, or waits.

Real `aetherfs pull` processes on the embedded local store. The first is stopped (SIGSTOP)
while it holds the target, so the overlap is certain, not a matter of timing.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aetherfs.ops.pull import staging_path
from aetherfs.ops.pull_lock import lock_path
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli


def start_pull(cli: Cli, ref: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aetherfs.cli.main", "pull", ref, str(out), "--json", *extra],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_while_staging(proc: subprocess.Popen[str], out: Path) -> None:
    """SIGSTOP `proc` once it is building its tree beside `out`."""
    staging = staging_path(out)
    deadline = time.monotonic() + 60
    while not staging.exists():
        assert proc.poll() is None, "the pull ended before it could be caught"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signal.SIGSTOP)


def publish_two(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    make_tree(v1, seed=1, big=40_000_000)
    make_tree(v2, seed=2, big=40_000_000)
    cli("push", str(v1), "geo:1.0.0")
    cli("push", str(v2), "geo:2.0.0")
    return v1, v2


def stopped_pull(cli: Cli, tmp_path: Path) -> tuple[Path, Path, Path, subprocess.Popen[str]]:
    """v1 and v2 published, a pull of v1 into out/ stopped half-way: v1, v2, out, that pull."""
    v1, v2 = publish_two(cli, tmp_path)
    out = tmp_path / "out"
    first = start_pull(cli, "geo:1.0.0", out, "--workers", "1", "--no-cache")
    stop_while_staging(first, out)
    return v1, v2, out, first


def test_a_second_pull_into_the_same_directory_fails_at_once_naming_the_first(
    cli: Cli, tmp_path: Path
) -> None:
    v1, v2, out, first = stopped_pull(cli, tmp_path)
    try:
        started = time.monotonic()
        second = cli("pull", "geo:2.0.0", str(out), check=False)
        took = time.monotonic() - started
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.code == 6, second.err
    assert f"pid {first.pid}" in second.err and "geo:1.0.0" in second.err, second.err
    assert "--wait" in second.err
    assert took < 10  # at once, not after the first pull
    assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
    assert tree(out) == tree(v1)
    # What was recorded vouches only for what the first pull wrote: a pull of v1 again links
    # every file and fetches nothing; v2 then comes out exact.
    again = json.loads(cli("pull", "geo:1.0.0", str(out), "--json", "--no-cache").out)
    assert again["bytes_by_source"].get("store", 0) == 0
    cli("pull", "geo:2.0.0", str(out))
    assert tree(out) == tree(v2)


def test_wait_takes_the_directory_once_the_other_pull_is_done(cli: Cli, tmp_path: Path) -> None:
    _, v2, out, first = stopped_pull(cli, tmp_path)
    try:
        second = start_pull(cli, "geo:2.0.0", out, "--wait")
        time.sleep(1.5)
        assert second.poll() is None  # still waiting for the stopped pull
    finally:
        first.send_signal(signal.SIGCONT)
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert f"pid {first.pid}" in err2  # it said what it waited for
    assert json.loads(out1)["manifest"] != json.loads(out2)["manifest"]
    assert tree(out) == tree(v2)
    again = json.loads(cli("pull", "geo:2.0.0", str(out), "--json", "--no-cache").out)
    assert again["bytes_by_source"].get("store", 0) == 0
    assert tree(out) == tree(v2)
    # Nothing is left beside DIR once no pull runs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "v1", "v2"]


def test_a_pull_killed_while_holding_the_directory_does_not_block_the_next(
    cli: Cli, tmp_path: Path
) -> None:
    v1, _, out, first = stopped_pull(cli, tmp_path)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    cli("pull", "geo:1.0.0", str(out))  # the lock went with the process
    assert tree(out) == tree(v1)


def test_a_lock_file_of_another_user_still_excludes_and_is_taken_when_free(
    cli: Cli, tmp_path: Path
) -> None:
    """Left by another user's pull (mode 0644, not writable here): locked read-only. The
    pull runs with capabilities dropped, so root is held to file modes as a user is."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the lock file to another user")
    v1, _ = publish_two(cli, tmp_path)
    out = tmp_path / "out"
    lock = lock_path(out)
    lock.write_text(json.dumps({"pid": 4242, "what": "geo:9.9.9"}))
    lock.chmod(0o644)
    os.chown(lock, 65534, 65534)
    as_user = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    command = [*as_user, sys.executable, "-m", "aetherfs.cli.main", "pull", "geo:1.0.0", str(out)]
    with lock.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the other user's pull, still running
        refused = subprocess.run(command, env=cli.env, capture_output=True, text=True)
        assert refused.returncode == 6, refused.stderr
        assert "pid 4242, pulling geo:9.9.9" in refused.stderr
    done = subprocess.run(command, env=cli.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert tree(out) == tree(v1)
