"""The store (a real SeaweedFS) goes away and comes back: the agent keeps serving its live
version, says it is retrying, and catches up when the store returns."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
import pytest

from tests.agent.conftest import AgentFactory, push, tree, write_dataset
from tests.conftest import Cli
from tests.fixtures.ports import free_port
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS, weed_binary


def _wait_ready(endpoint: str, process: subprocess.Popen[bytes], first: bool) -> None:
    """Ready when a write succeeds (the shared fixture's check assumes a new bucket)."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "weed exited"
        try:
            if first:
                client.create_bucket(Bucket=SeaweedFS.bucket)
                first = False
            client.put_object(Bucket=SeaweedFS.bucket, Key="probe", Body=b"ok")
            return
        except Exception:
            time.sleep(0.3)
    raise AssertionError("SeaweedFS did not become ready within 60 s")


@contextmanager
def weed(data_dir: Path, ports: tuple[int, int, int, int], first: bool) -> Iterator[SeaweedFS]:
    s3, master, volume, filer = ports
    log = (data_dir / "weed.log").open("ab")
    process = subprocess.Popen(
        [
            weed_binary(),
            "server",
            f"-dir={data_dir}",
            "-s3",
            f"-s3.port={s3}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-volume.max=20",
            "-master.volumeSizeLimitMB=64",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{s3}", process, first)
        yield SeaweedFS(f"http://127.0.0.1:{s3}", process)
    finally:
        process.kill()
        process.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.s3
def test_store_goes_away_and_comes_back(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    data = tmp_path / "weed"
    data.mkdir()
    ports = (free_port(), free_port(), free_port(), free_port())
    src = tmp_path / "src"
    write_dataset(src, 1, big=500_000)
    with weed(data, ports, first=True) as server:
        local_store.env["AETHERFS_STORE"] = server.store_url()
        local_store.env["AETHERFS_S3_ENDPOINT"] = server.endpoint
        v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
        agent = agents("--subscribe", "team/geo-db:stable")
        agent.wait_live("team/geo-db:stable", v1)

    # The store is gone: status says so, retries back off, the live version is still served.
    snap = agent.wait_for(
        lambda s: s["subscriptions"][0]["retries"] >= 2, "retries while the store is down", 90
    )
    ch = snap["subscriptions"][0]
    assert ch["state"] == "retrying" and ch["live"]["manifest"] == v1
    assert "StoreUnavailable" in ch["last_error"] and ch["next_retry"] is not None
    assert snap["agent"]["store_reachable"] is False
    assert tree(agent.data_root / "team/geo-db/stable") == tree(src)
    body = httpx.get(f"{agent.url}/files/team/geo-db/stable/big.bin", timeout=10).content
    assert body == (src / "big.bin").read_bytes()
    out = local_store("status", "--data-root", str(agent.data_root)).out
    assert "unreachable: retrying" in out

    with weed(data, ports, first=False):
        (src / "sub/small.txt").write_text("after the outage\n")
        v2 = push(local_store, src, "team/geo-db:1.1.0", "stable")
        snap = agent.wait_live("team/geo-db:stable", v2, timeout=60)
        snap = agent.wait_for(
            lambda s: s["subscriptions"][0]["retries"] == 0, "a clean check after recovery"
        )
        assert snap["agent"]["store_reachable"] is True
        assert (agent.data_root / "team/geo-db/stable/sub/small.txt").read_text() == (
            "after the outage\n"
        )
        assert agent.stop() == 0
