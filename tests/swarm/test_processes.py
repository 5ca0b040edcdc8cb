"""Two engines in two real processes trade a version over loopback TCP."""

from __future__ import annotations

import json
import subprocess
import sys

DEMO = [sys.executable, "-m", "aetherfs.swarm.demo"]


def test_a_version_crosses_from_one_process_to_another() -> None:
    common = ["--version", "cross", "--mib", "8", "--block-kib", "64", "--seconds", "30"]
    with subprocess.Popen([*DEMO, "serve", *common], stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            port = json.loads(server.stdout.readline())["port"]
            fetched = subprocess.run(
                [*DEMO, "fetch", *common, "--peer", f"127.0.0.1:{port}", "--open"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.terminate()
    assert fetched.returncode == 0, fetched.stderr
    result = json.loads(fetched.stdout)
    assert result["bytes_from_peers"] == result["bytes"] > 8_000_000
    assert result["blocks"] == result["opened"] == 128
    assert result["store_reads"] == 0 and result["peers"] == ["demo-serve"]


def test_a_fetcher_of_another_fleet_gets_nothing_and_says_so() -> None:
    common = ["--version", "cross", "--mib", "1", "--seconds", "3"]
    with subprocess.Popen(
        [*DEMO, "serve", *common, "--seconds", "20"], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            port = json.loads(server.stdout.readline())["port"]
            fetched = subprocess.run(
                [*DEMO, "fetch", *common, "--fleet", "other", "--peer", f"127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.terminate()
    assert fetched.returncode == 1
    assert fetched.stderr.strip() == "error: no peer served the version within 3 s"
