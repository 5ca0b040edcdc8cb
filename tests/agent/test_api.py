"""The status API with real clients: grpcio over the Unix socket and TCP, httpx, curl."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import grpc
import httpx
import pytest

from aetherfs.agent.client import agent_stub
from aetherfs.agent.proto import agent_pb2
from tests.agent.conftest import AgentFactory, push, write_dataset
from tests.conftest import Cli


def test_grpc_status_subscribe_publish_shutdown(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_dataset(src, 1, big=300_000)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    agent = agents("--subscribe", "team/geo-db:stable", "--subscribe", "team/geo-db:latest")
    agent.wait_live("team/geo-db:stable", v1)

    with grpc.insecure_channel(f"unix:{agent.grpc_socket}") as channel:
        stub = agent_stub(channel)
        reply = stub.Status(agent_pb2.StatusRequest(), timeout=10)
        assert reply.data_root == str(agent.data_root)
        by_ref = {f"{c.dataset}:{c.channel}": c for c in reply.channels}
        assert by_ref["team/geo-db:stable"].live_manifest == v1
        assert reply.bytes_by_source["store"] > 0
        assert json.loads(reply.json)["agent"]["pid"] == reply.pid

        events: queue.Queue[agent_pb2.VersionLive] = queue.Queue()
        stream = stub.Subscribe(agent_pb2.SubscribeRequest(refs=["team/geo-db:stable"]))

        def read() -> None:
            try:
                for event in stream:
                    events.put(event)
            except grpc.RpcError:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        # Publish through the agent (its store, its keyring); the channel then moves.
        (src / "sub/small.txt").write_text("published through the agent\n")
        published = stub.Publish(
            agent_pb2.PublishRequest(
                directory=str(src), dataset="team/geo-db", tags=["1.1.0", "stable"]
            ),
            timeout=30,
        )
        assert sorted(published.tags) == ["1.1.0", "latest", "stable"]
        event = events.get(timeout=20)
        assert (event.dataset, event.channel, event.manifest_id) == (
            "team/geo-db",
            "stable",
            published.manifest_id,
        )
        assert event.path == str(agent.data_root / "team/geo-db/stable")
        assert (Path(event.path) / "sub/small.txt").read_text() == "published through the agent\n"
        assert events.empty()  # the `latest` move was filtered out
        stream.cancel()

        with pytest.raises(grpc.RpcError) as caught:
            stub.Publish(
                agent_pb2.PublishRequest(directory="relative/dir", dataset="team/geo-db"),
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # The same service on loopback TCP; Shutdown stops the process cleanly.
    with grpc.insecure_channel(f"127.0.0.1:{agent.grpc_port}") as channel:
        stub = agent_stub(channel)
        assert stub.Status(agent_pb2.StatusRequest(), timeout=10).pid
        stub.Shutdown(agent_pb2.ShutdownRequest(), timeout=10)
    assert agent.process is not None
    assert agent.process.wait(15) == 0
    assert "reason=grpc" in agent.log()


def test_rest_files_range_etag_metrics(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_dataset(src, 4, big=100_000)
    v1 = push(local_store, src, "team/geo-db:1.0.0", "stable")
    agent = agents("--subscribe", "team/geo-db:stable")
    agent.wait_live("team/geo-db:stable", v1)
    big = (src / "big.bin").read_bytes()
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        whole = client.get("/files/team/geo-db/stable/big.bin")
        assert whole.status_code == 200 and whole.content == big
        etag = whole.headers["etag"]
        part = client.get("/files/team/geo-db/stable/big.bin", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == big[10:20]
        same = client.get("/files/team/geo-db/stable/big.bin", headers={"If-None-Match": etag})
        assert same.status_code == 304
        for bad, code in (
            ("team/geo-db/stable/nope", 404),
            (".versions/x/big.bin", 404),
            ("team/geo-db/stable/%2e%2e/x", 400),
            ("team/geo-db/stable/sub%2fsmall.txt", 400),
        ):
            assert client.get(f"/files/{bad}").status_code == code, bad
        listing = client.get("/files/team/geo-db/stable/", headers={"Accept": "application/json"})
        assert {n["path"] for n in listing.json()} == {"big.bin", "sub"}
        head = client.head("/files/team/geo-db/stable/big.bin")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(big))
        metrics = client.get("/metrics").text
        assert (
            'aetherfs_agent_file_reads_total{path="big.bin",subscription="team/geo-db:stable"} 2.0'
            in metrics
        )
        assert 'aetherfs_agent_fetched_bytes_total{source="store"}' in metrics
        assert f'manifest="{v1}"' in metrics
        # A new version with big.bin unchanged: its ETag survives the switch.
        (src / "sub/small.txt").write_text("v2\n")
        v2 = push(local_store, src, "team/geo-db:1.1.0", "stable")
        agent.wait_live("team/geo-db:stable", v2)
        again = client.get("/files/team/geo-db/stable/big.bin", headers={"If-None-Match": etag})
        assert again.status_code == 304
        small = client.get("/files/team/geo-db/stable/sub/small.txt")
        assert small.text == "v2\n"
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run(
            [curl, "-sf", "--unix-socket", str(agent.socket), "http://agent/v1/status"],
            capture_output=True,
            check=True,
            timeout=10,
        )
        assert json.loads(out.stdout)["subscriptions"][0]["live"]["manifest"] == v2
    human = local_store("status", "--url", agent.url).out
    assert "most read over HTTP: team/geo-db:stable/big.bin (2)" in human
    response = httpx.post(f"{agent.url}/v1/shutdown", timeout=10)
    assert response.json() == {"ok": True}
    assert agent.process is not None and agent.process.wait(15) == 0


def test_status_without_agent_and_taken_port_say_what_to_do(
    agents: AgentFactory, local_store: Cli, tmp_path: Path
) -> None:
    result = local_store("status", "--data-root", str(tmp_path / "none"), check=False)
    assert result.code == 7 and "is `aetherfs agent` running?" in result.err
    result = local_store("status", check=False)
    assert result.code == 2 and "say where the agent is" in result.err

    first = agents()
    second = agents(
        "--listen-http", f"127.0.0.1:{first.http_port}", data_root=tmp_path / "root2", start=False
    )
    second.start(wait=False)
    assert second.process is not None and second.process.wait(30) != 0
    assert "aetherfs: error:" in second.log() and "Traceback" not in second.log()
