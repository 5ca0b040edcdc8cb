"""What every benchmark needs: an S3 server, isolated environments, timed child processes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from aetherfs.errors import AetherError

# SeaweedFS takes the AWS_* keys in its environment as its identity: use the same everywhere.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "aetherfs-test", "AWS_SECRET_ACCESS_KEY": "aetherfs-test"}
BUCKET = "aetherfs-bench"
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchmarkError(AetherError):
    """A benchmark step failed: the message names the command and its output."""


@dataclass(frozen=True, slots=True)
class Run:
    """A finished child process: wall time, peak resident memory, output."""

    seconds: float
    max_rss: int  # bytes
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system of the child and the descendants it waited for

    def json(self) -> Any:
        data = json.loads(self.stdout)
        if isinstance(data, dict) and "directory" in data:
            # Results are committed: keep no path of the machine that ran them.
            data["directory"] = Path(data["directory"]).name
        return data


def _peak_rss(pid: int) -> int | None:
    """The process's resident-memory high-water mark (VmHWM), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def run(cmd: Sequence[str | Path], env: dict[str, str], cwd: Path | None = None) -> Run:
    """Run `cmd` to completion; raise BenchmarkError if it fails.

    Peak memory is the child's VmHWM, sampled every few milliseconds until it exits (a high
    water mark: any sample after the peak holds it). rusage's ru_maxrss cannot be used: a
    child forked from this (large) process starts with this process's high-water mark.
    """
    args = [str(c) for c in cmd]
    peak = 0
    # Dirty pages the previous step left (a store's or a tree's writes) are flushed first, so
    # their writeback is not charged to whichever tool happens to run next.
    os.sync()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=err)
        # Reaped with wait4, not poll(): its rusage is the CPU the whole process tree used.
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_rss(process.pid) or 0)
            time.sleep(0.005)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if process.returncode != 0:
        raise BenchmarkError(f"{' '.join(args)} exited with {process.returncode}: {stderr[-2000:]}")
    return Run(seconds, peak, stdout, stderr, usage.ru_utime + usage.ru_stime)


def base_env(home: Path) -> dict[str, str]:
    """An environment with its own HOME and XDG directories (fresh keys, cache, config)."""
    for sub in ("config", "data", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
        "AWS_REGION": "us-east-1",
        **CREDENTIALS,
    }
    return env


def aetherfs_cmd(*args: str | Path) -> list[str | Path]:
    return [sys.executable, "-m", "aetherfs.cli.main", *args]


def which(tool: str) -> str | None:
    return shutil.which(tool) or (
        str(Path(sys.executable).parent / tool)
        if (Path(sys.executable).parent / tool).exists()
        else None
    )


def make_bucket(endpoint: str, bucket: str = BUCKET) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


@contextlib.contextmanager
def s3_server(work: Path, endpoint: str | None = None) -> Iterator[str]:
    """An S3 endpoint with the benchmark bucket: `endpoint` if given, else a fresh SeaweedFS."""
    with s3_server_process(work, endpoint) as (url, _):
        yield url


@contextlib.contextmanager
def s3_server_process(work: Path, endpoint: str | None = None) -> Iterator[tuple[str, int | None]]:
    """`s3_server`, with the pid of the server it started (None for an `endpoint` given), so
    a benchmark can count the server's CPU too."""
    if endpoint:
        make_bucket(endpoint)
        yield endpoint, None
        return
    # The test suite's launcher: same flags, free ports, waits until the S3 gateway works.
    from tests.fixtures.seaweedfs import run_seaweedfs

    data = work / "seaweedfs"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    os.environ.update(CREDENTIALS)
    with run_seaweedfs(data) as server:
        make_bucket(server.endpoint)
        yield server.endpoint, server.process.pid


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"Linux {platform.release()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}"


def commit() -> str:
    """The commit being measured (with a mark if the tree has changes), or '?' outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "aetherfs"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return (head or "?") + (" (aetherfs/ modified)" if dirty else "")


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"
