"""Two engines in two real processes trade a version over loopback TCP."""

from __future__ import annotations

import json

from aetherfs.swarm.demo import run_fetch, serving


def test_a_version_crosses_from_one_process_to_another() -> None:
    common = ["--version", "cross", "--mib", "8", "--block-kib", "64", "--seconds", "30"]
    with serving(common) as (_server, port):
        fetched = run_fetch([*common, "--open"], port)
    assert fetched.returncode == 0, fetched.stderr
    result = json.loads(fetched.stdout)
    assert result["bytes_from_peers"] == result["bytes"] > 8_000_000
    assert result["blocks"] == result["opened"] == 128
    assert result["store_reads"] == 0 and result["peers"] == ["demo-serve"]


def test_a_fetcher_of_another_fleet_gets_nothing_and_says_so() -> None:
    common = ["--version", "cross", "--mib", "1"]
    with serving([*common, "--seconds", "20"]) as (_server, port):
        fetched = run_fetch([*common, "--seconds", "3", "--fleet", "other"], port)
    assert fetched.returncode == 1
    assert fetched.stderr.strip() == "error: no peer served the version within 3 s"
