"""The agent's bandwidth caps reach its swarm: a capped peer serves no faster than its cap,
and status and metrics show the caps and each fetch's priority. Two real agents on loopback,
static peers, no mDNS (mDNS would leave the host: LAN tests are in tests/peers/)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.agent.conftest import AgentProcess, push, tree
from tests.conftest import Cli
from tests.fixtures.ports import free_port

MIB = 1024 * 1024
CAP = 1 * MIB  # the serving agent's upload cap, bytes per second (burst: one second of it)
PIECE = 4 * MIB  # the largest piece (docs/planner.md): one transfer may overdraw the bucket


def _peer_agent(cli: Cli, tmp_path: Path, name: str, port: int, *args: str) -> AgentProcess:
    argv = [
        "--poll-interval", "0.2", "--retry-max", "1",
        "--peer-listen", f"127.0.0.1:{port}", "--no-mdns",
        "--subscribe", "team/geo:stable",
        *args,
    ]  # fmt: skip
    return AgentProcess(cli, tmp_path / name, argv, tmp_path / f"{name}.log", peers=True)


def test_an_upload_cap_paces_what_a_peer_serves_and_status_shows_caps_and_priority(
    local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(_random(16 * MIB))
    v1 = push(local_store, src, "team/geo:1.0.0", "stable")
    seed_port, fetch_port = free_port(), free_port()
    seed = _peer_agent(local_store, tmp_path, "seed", seed_port, "--peer-upload-rate", "1M")
    fetcher_args = [
        "--peer", f"127.0.0.1:{seed_port}",
        "--peer-download-rate", "64M",
        "--store-rate", "100M",
        "--priority", "team/geo:stable=7",
    ]  # fmt: skip
    fetcher = _peer_agent(local_store, tmp_path, "fetcher", fetch_port, *fetcher_args)
    try:
        seed.start().wait_live("team/geo:stable", v1)
        caps = seed.status()["peer_exchange"]["bandwidth"]
        assert caps == {"peer_upload": CAP, "peer_download": None, "store_read": None}
        assert (
            "caps: peer upload 1.0 MiB/s"
            in local_store("status", "--data-root", str(seed.data_root)).out
        )

        started = time.monotonic()
        fetcher.start()
        snap = fetcher.wait_live("team/geo:stable", v1, timeout=60)
        elapsed = time.monotonic() - started
        assert tree(fetcher.data_root / "team/geo/stable") == tree(src)

        sent = sum(p["bytes_sent"] for p in seed.status()["peers"])
        # The token bucket's bound: one second's burst, the rate over the time, one piece
        # started in debt. Uncapped, the seed would have sent all 16 MiB in well under a second.
        assert sent <= CAP + CAP * elapsed + PIECE, (sent, elapsed)
        fetched = snap["fetches"]
        assert [f["priority"] for f in fetched] == [7]
        assert sum(fetched[0]["bytes"].values()) >= 16 * MIB  # the rest came from the store
        assert snap["peer_exchange"]["bandwidth"] == {
            "peer_upload": None,
            "peer_download": 64 * MIB,
            "store_read": 100 * MIB,
        }
        metrics = httpx.get(f"{fetcher.url}/metrics", timeout=10).text
        assert (
            'aetherfs_agent_bandwidth_cap_bytes_per_second{direction="peer_download"} 6.7108864e+07'
            in metrics
        )
        doc = json.loads(local_store("status", "--data-root", str(fetcher.data_root), "--json").out)
        assert doc["fetches"][0]["priority"] == 7
    finally:
        fetcher.close()
        seed.close()


def _random(n: int) -> bytes:
    import random

    return random.Random(14).randbytes(n)
