"""Fixtures shared by every test: isolated XDG directories, the CLI, a real S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aetherfs.cli.main import main
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS, run_seaweedfs


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    """Runs `aetherfs` in a separate process with an isolated environment."""

    env: dict[str, str]
    home: Path

    def __call__(self, *args: str, check: bool = True) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "aetherfs.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"aetherfs {' '.join(args)} failed: {done.stderr}")
        return result

    def inproc(self, *args: str) -> int:
        """Run in this process (faster; for checks that need no separate process)."""
        old = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            return main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(old)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        **CREDENTIALS,
    }
    return Cli(env, home)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
