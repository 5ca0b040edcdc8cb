"""Bad input against a real hub: malformed JSON, oversized bodies, bytes that do not match their
id, bad names, and tag sets racing each other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from aetherfs.core.blocks import seal_block
from aetherfs.core.chunking import DEFAULT_PARAMS
from aetherfs.core.ids import PackId
from aetherfs.core.manifest import FILE, FileEntry, Manifest, seal_manifest
from aetherfs.hub.config import HubConfig, Limits
from aetherfs.repository import StoreRepository
from aetherfs.store.layout import pack_key
from tests.hub.helpers import RunningHub, publish, start_hub


@pytest.fixture
async def small_hub(nursery: trio.Nursery, repo: StoreRepository) -> AsyncIterator[RunningHub]:
    config = HubConfig(listen="127.0.0.1:0", limits=Limits(json_body=1024, manifest=64 * 1024))
    running = await start_hub(nursery, repo, config)
    yield running
    running.cancel.cancel()


async def test_malformed_json_and_fields(hub: RunningHub, tmp_path: Path) -> None:
    publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    url = "/v1/datasets/team/geo-db/-/tags/stable"
    async with hub.client(hub.admin) as c:
        for body in (b"{", b"[1,2]", b'"x"', b"\xff\xfe", b""):
            r = await c.put(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, body
            assert r.json()["error"]["code"] == "invalid"
        for doc in (
            {},
            {"manifest": 5},
            {"manifest": "zz"},
            {"manifest": "ab" * 31},
            {"manifest": "ab" * 32, "expect_seq": "1"},
            {"manifest": "ab" * 32, "expect_seq": True},
            {"manifest": "ab" * 32, "expect_seq": -1},
        ):
            r = await c.put(url, json=doc)
            assert r.status_code == 400, doc
        # A well-formed id of a manifest that is not there: 404, and no tag is created.
        r = await c.put(url, json={"manifest": "ab" * 32})
        assert r.status_code == 404
        assert (await c.get(url)).status_code == 404
        for bad in (
            "/v1/datasets/Team/X/-/tags",
            "/v1/datasets/team/nothing/-/tags",
            "/v1/datasets/team/geo-db/-/tags/BAD TAG",
            "/v1/datasets/team/geo-db/-/nope",
        ):
            r = await c.get(bad)
            assert r.status_code in (400, 404), bad
        r = await c.post("/v1/datasets", json={"name": "../etc"})
        assert r.status_code == 400
        r = await c.put("/v1/agents/..%2Fx/status", json={})
        assert r.status_code in (400, 404)
        r = await c.get("/v1/audit", params={"day": "../../x"})
        assert r.status_code == 400


async def test_bodies_over_the_limit(small_hub: RunningHub, tmp_path: Path) -> None:
    publish(small_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    async with small_hub.client(small_hub.admin) as c:
        r = await c.post("/v1/datasets", json={"name": "x" * 5000})
        assert r.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b"x" * 1024

        r = await c.put("/v1/datasets/team/geo-db/-/manifests/" + "ab" * 32, content=chunks())
        assert r.status_code == 413


async def test_manifest_bytes_must_match_id_and_key(hub: RunningHub, tmp_path: Path) -> None:
    pushed = publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    publish(hub.repo, tmp_path / "o", "team/other", ["1.0.0"])
    mid = pushed.manifest_id.hex()
    async with hub.client(hub.admin) as c:
        good = (await c.get(f"/v1/datasets/team/geo-db/-/manifests/{mid}")).content
        r = await c.put(f"/v1/datasets/team/geo-db/-/manifests/{'cd' * 32}", content=good)
        assert r.status_code == 422
        # Another dataset's manifest is neither served nor accepted under this one.
        r = await c.get(f"/v1/datasets/team/other/-/manifests/{mid}")
        assert r.status_code == 404
        r = await c.put(f"/v1/datasets/team/other/-/manifests/{mid}", content=good)
        assert r.status_code == 422


async def test_racing_tag_sets_one_wins(hub: RunningHub, tmp_path: Path) -> None:
    ids = [
        publish(hub.repo, tmp_path / f"v{i}", "team/geo-db", [f"1.{i}.0"], seed=i).manifest_id
        for i in range(6)
    ]
    url = "/v1/datasets/team/geo-db/-/tags/stable"
    results: list[int] = []
    async with hub.client(hub.admin) as c:

        async def put(manifest: str, expect: int | None = 0) -> None:
            doc = {"manifest": manifest} | ({"expect_seq": expect} if expect is not None else {})
            r = await c.put(url, json=doc)
            results.append(r.status_code)

        async with trio.open_nursery() as n:
            for m in ids:
                n.start_soon(put, m.hex())
        assert sorted(results) == [200] + [409] * 5
        # Without expect_seq every writer lands, one after another: no update is lost.
        results.clear()
        async with trio.open_nursery() as n:
            for m in ids:
                n.start_soon(put, m.hex(), None)
        assert results == [200] * len(ids)
        history = (await c.get(url + "/history")).json()
        assert [h["seq"] for h in history] == list(range(1, len(history) + 1))
        assert len(history) >= 6


async def test_pack_bytes_must_match_id(hub: RunningHub, tmp_path: Path) -> None:
    v1 = publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    used = min(
        ref.pack
        for ref in hub.repo.get_manifest("team/geo-db", v1.manifest_id).unique_blocks().values()
        if ref.pack is not None
    )
    stored = hub.repo.store.get(pack_key(used))
    reader = hub.token("rita")
    data = bytes(range(256)) * 40
    right = PackId.of(data).hex()
    base = "/v1/datasets/team/geo-db/-/packs/"
    async with hub.client(hub.admin) as c:
        await c.put(
            "/v1/datasets/team/geo-db/-/grants", json={"subject": "user:rita", "role": "read"}
        )
        wrong = await c.put(base + PackId.of(b"other").hex(), content=data)
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "integrity"
        assert (await c.head(base + PackId.of(b"other").hex())).status_code == 404
        assert (await c.put(base + right, content=data)).status_code == 201
        again = await c.put(base + right, content=data)
        assert again.status_code == 200 and again.json()["created"] is False
        # Stored, but no manifest a tag of the dataset names uses it: not served.
        assert (await c.head(base + right)).status_code == 404
        assert (await c.get(base + right)).status_code == 404
        head = await c.head(base + used.hex())
        assert head.status_code == 200 and head.headers["content-length"] == str(len(stored))
        part = await c.get(base + used.hex(), headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == stored[10:20]
        assert (await c.get(base + used.hex())).content == stored
        past = await c.get(base + used.hex(), headers={"Range": f"bytes={len(stored)}-"})
        assert past.status_code == 416
    async with hub.client(reader) as r:
        assert (await r.get(base + used.hex(), headers={"Range": "bytes=0-0"})).status_code == 206
        assert (await r.put(base + right, content=data)).status_code == 403


async def test_manifest_naming_a_missing_pack_is_refused(hub: RunningHub, tmp_path: Path) -> None:
    publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    plaintext = b"hello"
    sealed = seal_block(plaintext, hub.repo.keyring.convergence_secret)
    ref = sealed.ref.located(PackId.of(b"never uploaded"), 0)
    manifest = Manifest(
        "team/geo-db", 0.0, DEFAULT_PARAMS, (FileEntry("a.txt", FILE, 0o644, 5, (ref,)),)
    )
    manifest_id, stored = seal_manifest(manifest, hub.repo.keyring.dataset_key("team/geo-db"))
    async with hub.client(hub.admin) as c:
        r = await c.put(f"/v1/datasets/team/geo-db/-/manifests/{manifest_id.hex()}", content=stored)
        assert r.status_code == 404 and "pack" in r.json()["error"]["message"]
        # So no tag can ever name it.
        t = await c.put(
            "/v1/datasets/team/geo-db/-/tags/stable", json={"manifest": manifest_id.hex()}
        )
        assert t.status_code == 404
