"""`aetherfs hub` as a real process: tokens made by the CLI, refusal to listen in the clear off
loopback, and two hubs over one SeaweedFS bucket racing on one tag."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from tests.conftest import Cli
from tests.fixtures.seaweedfs import SeaweedFS
from tests.hub.conftest import HubProcess
from tests.hub.helpers import make_tree

StartHub = Callable[..., AbstractContextManager[HubProcess]]


def test_hub_process_serves_with_cli_tokens(
    cli: Cli, start_hub_process: StartHub, tmp_path: Path
) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    make_tree(src)
    cli("push", str(src), "team/geo-db:1.0.0")
    admin = json.loads(cli("hub", "token", "create", "--name", "root", "--admin", "--json").out)
    reader = cli("hub", "token", "create", "--name", "rita").out.strip()
    cli("hub", "grant", "team/geo-db", "user:rita", "read")
    listed = json.loads(cli("hub", "token", "list", "--json").out)
    assert sorted(t["name"] for t in listed) == ["rita", "root"]
    assert reader not in json.dumps(listed)  # secrets are never shown again
    with start_hub_process() as hub:
        r = httpx.get(f"{hub.url}/v1/datasets", headers={"Authorization": f"Bearer {reader}"})
        assert [d["name"] for d in r.json()] == ["team/geo-db"]
        r = httpx.get(f"{hub.url}/v1/audit", headers={"Authorization": f"Bearer {admin['token']}"})
        assert {"token.create", "grant.set"} <= {e["action"] for e in r.json()}
    cli("hub", "token", "revoke", "--name", "rita")
    assert "rita" not in cli("hub", "token", "list").out


def test_refuses_plain_http_off_loopback(cli: Cli, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aetherfs.cli.main",
            "hub",
            "--listen",
            "0.0.0.0:0",
            "--store",
            (tmp_path / "store").as_uri(),
        ],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--tls-cert" in done.stderr


def test_two_hubs_over_one_bucket_lose_no_tag_update(
    cli: Cli, seaweedfs: SeaweedFS, start_hub_process: StartHub, tmp_path: Path
) -> None:
    cli.env["AETHERFS_STORE"] = seaweedfs.store_url()
    cli.env["AETHERFS_S3_ENDPOINT"] = seaweedfs.endpoint
    src = tmp_path / "src"
    manifests = []
    for i in range(4):
        make_tree(src, seed=i, size=20_000)
        out = json.loads(cli("push", str(src), f"team/geo-db:1.{i}.0", "--no-latest", "--json").out)
        manifests.append(out["manifest"])
    token = cli("hub", "token", "create", "--name", "root", "--admin").out.strip()
    auth = {"Authorization": f"Bearer {token}"}
    with start_hub_process() as a, start_hub_process() as b:
        url = "/v1/datasets/team/geo-db/-/tags/stable"

        def put(i: int) -> tuple[int, str]:
            hub = (a, b)[i % 2]
            doc = {"manifest": manifests[i % len(manifests)]}
            r = httpx.put(hub.url + url, json=doc, headers=auth, timeout=60)
            assert r.status_code == 200, r.text
            return int(r.json()["seq"]), doc["manifest"]

        with ThreadPoolExecutor(8) as pool:
            landed = list(pool.map(put, range(24)))
        history = httpx.get(a.url + url + "/history", headers=auth).json()
    # Every write that changed the tag got its own seq and is in the history, in order;
    # consecutive writes of the same manifest are one record.
    assert [h["seq"] for h in history] == list(range(1, len(history) + 1))
    # The record each writer was told it made is the one in the history: nothing overwritten.
    for seq, manifest in landed:
        assert history[seq - 1]["manifest"] == manifest
    assert len(history) > 4
