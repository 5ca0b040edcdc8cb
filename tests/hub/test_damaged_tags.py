"""A damaged tag record on the store: the hub names it and serves the dataset's other tags
(REST, gRPC, the CLI through it), and a move of the damaged tag says how to repair it."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import httpx
import pytest
import trio

from aetherfs.hub.grpc_gen import hub_pb2 as pb
from tests.conftest import Cli
from tests.hub.conftest import HubProcess
from tests.hub.helpers import RunningHub, publish
from tests.hub.test_cli_hub import client_cli
from tests.hub.test_grpc import auth, stub

StartHub = Callable[..., AbstractContextManager[HubProcess]]
DATASET = "team/geo-db"
REPAIR = f"aetherfs tag --repair {DATASET}:stable"


def damage(store: Path, tag: str) -> None:
    path = store / "tags" / DATASET / f"@{tag}"
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 0xFF  # inside the newest record: its signature no longer holds
    path.write_bytes(bytes(damaged))


def test_the_hub_names_a_damaged_tag_and_serves_the_others(
    cli: Cli, start_hub_process: StartHub, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    cli.env["AETHERFS_STORE"] = store.as_uri()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.txt").write_text("one\n")
    v1 = json.loads(cli("push", str(src), f"{DATASET}:1.0.0", "--tag", "stable", "--json").out)
    reader = cli("hub", "token", "create", "--name", "rita").out.strip()
    writer = cli("hub", "token", "create", "--name", "will").out.strip()
    cli("hub", "grant", DATASET, "user:rita", "read")
    cli("hub", "grant", DATASET, "user:will", "write")
    damage(store, "stable")
    with start_hub_process() as hub:
        headers = {"Authorization": f"Bearer {reader}"}
        with httpx.Client(base_url=hub.url, headers=headers) as http:
            r = http.get(f"/v1/datasets/{DATASET}/-/tags")
            assert r.status_code == 200, r.text  # it was 422 for the whole dataset
            assert sorted(r.json()) == ["1.0.0", "latest"]
            doc = http.get(f"/v1/datasets/{DATASET}").json()
            assert sorted(doc["tags"]) == ["1.0.0", "latest"]
            assert list(doc["damaged"]) == ["stable"] and REPAIR in doc["damaged"]["stable"]
            listed = http.get("/v1/datasets").json()
            assert listed[0]["damaged"] == ["stable"] and "stable" not in listed[0]["tags"]
            # A pack the good tags use is still served through the dataset's path.
            assert http.get(f"/v1/datasets/{DATASET}/-/tags/latest").status_code == 200

        # The CLI through the hub lists the others and names the bad one, as on a store.
        rita = client_cli(cli, hub.url, "rita")
        rita.env["AETHERFS_HUB_TOKEN"] = reader
        tags = rita("tags", DATASET, check=False)
        assert tags.code == 5, tags.err
        assert "1.0.0" in tags.out and "latest" in tags.out and "stable" not in tags.out
        assert f"{DATASET}:stable" in tags.err and REPAIR in tags.err
        assert "Traceback" not in tags.err
        # A writer moving the damaged tag is told which tag and how to repair it.
        will = client_cli(cli, hub.url, "will")
        will.env["AETHERFS_HUB_TOKEN"] = writer
        moved = will("tag", f"{DATASET}:1.0.0", "stable", check=False)
        assert moved.code == 5 and f"{DATASET}:stable" in moved.err and REPAIR in moved.err
        assert will("tag", f"{DATASET}:1.0.0", "beta").code == 0  # the others still move

    # Repaired on the store (store-only), the tag is back through the hub.
    cli("tag", "--repair", f"{DATASET}:stable", "--manifest", v1["manifest"])
    with start_hub_process() as hub:
        rita = client_cli(cli, hub.url, "rita")
        rita.env["AETHERFS_HUB_TOKEN"] = reader
        tags = json.loads(rita("tags", DATASET, "--json").out)
        assert sorted(tags) == ["1.0.0", "beta", "latest", "stable"]
        assert tags["stable"][0]["manifest"] == v1["manifest"]


async def test_grpc_list_tags_names_the_damaged_ones(grpc_hub: RunningHub, tmp_path: Path) -> None:
    publish(grpc_hub.repo, tmp_path / "v1", DATASET, ["1.0.0", "stable"])
    damage(tmp_path / "store", "stable")  # the `repo` fixture's store

    def calls() -> None:
        channel, hub = stub(grpc_hub)
        with channel:
            listed = hub.ListTags(pb.DatasetRef(dataset=DATASET), metadata=auth(grpc_hub.admin))
            assert [t.tag for t in listed.tags] == ["1.0.0"]
            assert [d.tag for d in listed.damaged] == ["stable"]
            assert REPAIR in listed.damaged[0].reason
            with pytest.raises(grpc.RpcError) as refused:
                hub.SetTag(
                    pb.SetTagRequest(
                        dataset=DATASET, tag="stable", manifest=listed.tags[0].manifest
                    ),
                    metadata=auth(grpc_hub.admin),
                )
            assert REPAIR in str(refused.value.details())

    await trio.to_thread.run_sync(calls)
