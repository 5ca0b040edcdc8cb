"""Packs are served through a dataset's path only if that dataset's tagged manifests use them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import trio

from aetherfs.core.ids import PackId
from aetherfs.core.manifest import Manifest, seal_manifest
from aetherfs.hub.config import HubConfig
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.repository import StoreRepository
from aetherfs.store.layout import pack_key
from tests.hub.helpers import RunningHub, publish, start_hub
from tests.hub.test_grpc import auth, stub


def packs_of(repo: StoreRepository, dataset: str, tag: str) -> set[PackId]:
    manifest = repo.get_manifest(dataset, repo.resolve(dataset, tag).record.manifest_id)
    return {ref.pack for ref in manifest.unique_blocks().values() if ref.pack is not None}


def url(dataset: str, pack: PackId) -> str:
    return f"/v1/datasets/{dataset}/-/packs/{pack.hex()}"


@pytest.fixture
async def scoped_hub(nursery: trio.Nursery, repo: StoreRepository) -> AsyncIterator[RunningHub]:
    config = HubConfig(
        listen="127.0.0.1:0",
        grpc_listen="127.0.0.1:0",
        poll_interval=0.2,
        token_cache_seconds=0.3,
        acl_cache_seconds=0.3,
    )
    running = await start_hub(nursery, repo, config)
    yield running
    running.cancel.cancel()


async def test_a_reader_of_one_dataset_cannot_read_another_datasets_packs(
    scoped_hub: RunningHub, tmp_path: Path
) -> None:
    hub = scoped_hub
    publish(hub.repo, tmp_path / "a", "team/a", ["1.0.0"], seed=1)
    publish(hub.repo, tmp_path / "b", "team/b", ["1.0.0"], seed=2)
    own = packs_of(hub.repo, "team/a", "1.0.0")
    theirs = packs_of(hub.repo, "team/b", "1.0.0") - own
    assert own and theirs
    rita = hub.token("rita")
    async with hub.client(hub.admin) as admin:
        r = await admin.put(
            "/v1/datasets/team/a/-/grants", json={"subject": "user:rita", "role": "read"}
        )
        assert r.status_code == 200
    unknown = PackId.of(b"never stored")
    async with hub.client(rita) as c:
        for pack in own:
            assert (await c.head(url("team/a", pack))).status_code == 200
            part = await c.get(url("team/a", pack), headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and len(part.content) == 100
        for pack in theirs:
            # Through her own dataset's path: the same 404 as a pack that does not exist.
            head = await c.head(url("team/a", pack))
            whole = await c.get(url("team/a", pack))
            ranged = await c.get(url("team/a", pack), headers={"Range": "bytes=0-99"})
            missing = await c.get(url("team/a", unknown))
            assert head.status_code == whole.status_code == ranged.status_code == 404
            assert missing.status_code == 404
            assert whole.json()["error"]["message"].replace(pack.short(), "X") == missing.json()[
                "error"
            ]["message"].replace(unknown.short(), "X")
            # Through the other dataset's path: not hers to read.
            assert (await c.get(url("team/b", pack))).status_code == 403
    async with hub.client() as anonymous:
        assert (await anonymous.get(url("team/a", next(iter(own))))).status_code == 401
    async with hub.client(hub.admin) as admin:
        # Not even a hub admin reads a pack through a dataset that does not use it.
        assert (await admin.get(url("team/a", next(iter(theirs))))).status_code == 404
        assert (await admin.get(url("team/b", next(iter(theirs))))).status_code == 200

    def grpc_calls() -> None:
        channel, stubbed = stub(hub)
        with channel:
            pack = next(iter(theirs))
            stat = stubbed.StatPack(
                pb.PackRef(dataset="team/a", pack=pack.digest), metadata=auth(rita)
            )
            assert not stat.present
            try:
                stubbed.GetPackRange(
                    pb.PackRange(dataset="team/a", pack=pack.digest, start=0, length=100),
                    metadata=auth(rita),
                )
                raise AssertionError("another dataset's pack was served over gRPC")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            mine = next(iter(own))
            assert stubbed.StatPack(
                pb.PackRef(dataset="team/a", pack=mine.digest), metadata=auth(rita)
            ).present
            blob = stubbed.GetPackRange(
                pb.PackRange(dataset="team/a", pack=mine.digest, start=0, length=100),
                metadata=auth(rita),
            )
            assert len(blob.data) == 100

    await trio.to_thread.run_sync(grpc_calls)


async def test_packs_of_past_and_new_versions(scoped_hub: RunningHub, tmp_path: Path) -> None:
    hub = scoped_hub
    publish(hub.repo, tmp_path / "v1", "team/a", ["1.0.0", "stable"], seed=1)
    v1_packs = packs_of(hub.repo, "team/a", "stable")
    async with hub.client(hub.admin) as c:
        for pack in v1_packs:  # now in the hub's pack set for team/a
            assert (await c.head(url("team/a", pack))).status_code == 200
        # A new version published straight on the store (as another hub would): its packs are
        # not in the cached set, and are served after the refresh a miss triggers.
        v2 = publish(hub.repo, tmp_path / "v2", "team/a", ["1.1.0"], seed=3)
        hub.repo.set_tag("team/a", "stable", v2.manifest_id)
        for tag in ("1.0.0", "1.1.0"):
            for pack in packs_of(hub.repo, "team/a", tag):
                assert (await c.head(url("team/a", pack))).status_code == 200
        # A pack only a manifest nobody tagged uses is not served.
        v3 = publish(hub.repo, tmp_path / "v3", "team/other", [], seed=4)
        untagged = (
            {
                ref.pack
                for ref in hub.repo.get_manifest("team/other", v3.manifest_id)
                .unique_blocks()
                .values()
                if ref.pack is not None
            }
            - packs_of(hub.repo, "team/a", "1.1.0")
            - v1_packs
        )
        assert untagged
        for pack in untagged:
            assert (await c.head(url("team/a", pack))).status_code == 404
            assert (await c.head(url("team/other", pack))).status_code == 404


async def test_a_writer_cannot_pull_another_datasets_pack_in_by_manifest(
    scoped_hub: RunningHub, tmp_path: Path
) -> None:
    hub = scoped_hub
    publish(hub.repo, tmp_path / "a", "team/a", ["1.0.0"], seed=1)
    publish(hub.repo, tmp_path / "b", "team/b", ["1.0.0"], seed=2)
    theirs = sorted(packs_of(hub.repo, "team/b", "1.0.0") - packs_of(hub.repo, "team/a", "1.0.0"))
    b_manifest = hub.repo.get_manifest(
        "team/b", hub.repo.resolve("team/b", "1.0.0").record.manifest_id
    )
    # A manifest of team/a naming team/b's blocks where they are stored (a writer of team/a
    # who learnt the pack ids and block ids).
    forged = Manifest("team/a", 0.0, b_manifest.chunking, b_manifest.files)
    forged_id, sealed = seal_manifest(forged, hub.repo.keyring.dataset_key("team/a"))
    will = hub.token("will")
    async with hub.client(hub.admin) as admin:
        r = await admin.put(
            "/v1/datasets/team/a/-/grants", json={"subject": "user:will", "role": "write"}
        )
        assert r.status_code == 200
    manifest_url = f"/v1/datasets/team/a/-/manifests/{forged_id.hex()}"
    async with hub.client(will) as c:
        refused = await c.put(manifest_url, content=sealed)
        assert refused.status_code == 404 and "upload it through team/a" in refused.text
        tag = await c.put("/v1/datasets/team/a/-/tags/stolen", json={"manifest": forged_id.hex()})
        assert tag.status_code == 404
        assert (await c.get(url("team/a", theirs[0]))).status_code == 404
        # Whoever sends the bytes through team/a holds them already: then the manifest is fine.
        for pack in theirs:
            data = hub.repo.store.get(pack_key(pack))
            assert (await c.put(url("team/a", pack), content=data)).status_code == 200
        assert (await c.put(manifest_url, content=sealed)).status_code == 201


async def test_file_server_follows_tag_moves(scoped_hub: RunningHub, tmp_path: Path) -> None:
    hub = scoped_hub
    publish(hub.repo, tmp_path / "v1", "team/a", ["1.0.0", "stable"], seed=1)
    v2 = publish(hub.repo, tmp_path / "v2", "team/a", ["2.0.0"], seed=2)
    v3 = publish(hub.repo, tmp_path / "v3", "team/a", ["3.0.0"], seed=3)
    readme = "/files/team/a/stable/README"
    async with hub.client(hub.admin) as c:
        assert (await c.get(readme)).text == "version 1\n"
        # Moved through this hub: served at once.
        moved = await c.put(
            "/v1/datasets/team/a/-/tags/stable", json={"manifest": v2.manifest_id.hex()}
        )
        assert moved.status_code == 200
        assert (await c.get(readme)).text == "version 2\n"
        # Moved on the store (as through another hub): within tag_cache_seconds.
        hub.repo.set_tag("team/a", "stable", v3.manifest_id)
        deadline = trio.current_time() + HubConfig().tag_cache_seconds + 1.0
        while (await c.get(readme)).text != "version 3\n":
            assert trio.current_time() < deadline, "the file server kept an old tag head"
            await trio.sleep(0.05)
