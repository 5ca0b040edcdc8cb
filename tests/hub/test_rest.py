"""The REST surface end to end: a real hub on a loopback socket, real httpx requests."""

from __future__ import annotations

import base64
from pathlib import Path

from aetherfs.core.manifest import open_manifest
from aetherfs.core.tags import SignedTag
from aetherfs.hub.audit import AuditLog
from tests.hub.helpers import RunningHub, publish


async def test_openapi_and_info(hub: RunningHub) -> None:
    async with hub.client() as client:
        doc = (await client.get("/v1/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        assert "/v1/datasets/{dataset}/-/tags/{tag}" in doc["paths"]
        info = (await client.get("/v1/info")).json()
        assert info["signer"] == hub.repo.keyring.signer_public.hex()  # type: ignore[union-attr]


async def test_datasets_tags_manifests_keys(hub: RunningHub, tmp_path: Path) -> None:
    pushed = publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0", "latest"])
    manifest = pushed.manifest_id.hex()
    reader = hub.token("rita")
    writer = hub.token("will")
    async with hub.client(hub.admin) as admin, hub.client(reader) as r, hub.client(writer) as w:
        # A dataset published on the bare store is there; nobody but admins may see it yet.
        assert [d["name"] for d in (await admin.get("/v1/datasets")).json()] == ["team/geo-db"]
        assert (await r.get("/v1/datasets")).json() == []
        for subject, role in (("user:rita", "read"), ("user:will", "write")):
            grant = await admin.put(
                "/v1/datasets/team/geo-db/-/grants", json={"subject": subject, "role": role}
            )
            assert grant.status_code == 200, grant.text
        assert [d["name"] for d in (await r.get("/v1/datasets")).json()] == ["team/geo-db"]

        tags = (await r.get("/v1/datasets/team/geo-db/-/tags")).json()
        assert tags["latest"]["manifest"] == manifest and tags["1.0.0"]["seq"] == 1
        # The signed record verifies against the registry key.
        signed = SignedTag.verify(
            base64.b64decode(tags["latest"]["signed"]), hub.repo.keyring.trusted
        )
        assert signed.record.manifest_id == pushed.manifest_id

        raw = await r.get(f"/v1/datasets/team/geo-db/-/manifests/{manifest}")
        assert raw.status_code == 200
        keys = (await r.get("/v1/datasets/team/geo-db/-/keys")).json()
        assert "convergence_secret" not in keys  # readers get the dataset key only
        opened = open_manifest(
            pushed.manifest_id, raw.content, "team/geo-db", bytes.fromhex(keys["dataset_key"])
        )
        assert {e.path for e in opened.files} >= {"data.bin", "README"}
        wkeys = (await w.get("/v1/datasets/team/geo-db/-/keys")).json()
        assert wkeys["convergence_secret"] == hub.repo.keyring.convergence_secret.hex()

        # A writer moves a channel; history grows; compare-and-swap on the seq.
        moved = await w.put(
            "/v1/datasets/team/geo-db/-/tags/stable", json={"manifest": manifest, "expect_seq": 0}
        )
        assert moved.status_code == 200 and moved.json()["seq"] == 1
        pushed2 = publish(hub.repo, tmp_path / "v2", "team/geo-db", ["1.1.0"], seed=2)
        stale = await w.put(
            "/v1/datasets/team/geo-db/-/tags/stable",
            json={"manifest": pushed2.manifest_id.hex(), "expect_seq": 0},
        )
        assert stale.status_code == 409 and "seq 1" in stale.json()["error"]["message"]
        ok = await w.put(
            "/v1/datasets/team/geo-db/-/tags/stable",
            json={"manifest": pushed2.manifest_id.hex(), "expect_seq": 1},
        )
        assert ok.json()["seq"] == 2
        history = (await r.get("/v1/datasets/team/geo-db/-/tags/stable/history")).json()
        assert [h["manifest"] for h in history] == [manifest, pushed2.manifest_id.hex()]
        # Version tags never move.
        frozen = await w.put(
            "/v1/datasets/team/geo-db/-/tags/1.0.0", json={"manifest": pushed2.manifest_id.hex()}
        )
        assert frozen.status_code == 409 and "immutable" in frozen.json()["error"]["message"]

        # Manifest upload: the same bytes under their id are accepted (already there).
        put = await w.put(f"/v1/datasets/team/geo-db/-/manifests/{manifest}", content=raw.content)
        assert put.status_code == 200 and put.json()["created"] is False

    # Writes and grants are in the audit log on the store.
    entries = AuditLog(hub.repo.store).entries()
    actions = [e["action"] for e in entries]
    assert actions.count("grant.set") == 2 and actions.count("tag.set") == 2
    assert {e["subject"] for e in entries if e["action"] == "tag.set"} == {"user:will"}


async def test_create_and_delete_dataset(hub: RunningHub) -> None:
    async with hub.client(hub.admin) as admin:
        created = await admin.post("/v1/datasets", json={"name": "team/new"})
        assert created.status_code == 201
        again = await admin.post("/v1/datasets", json={"name": "team/new"})
        assert again.status_code == 409
        grants = (await admin.get("/v1/datasets/team/new/-/grants")).json()
        assert grants == {"grants": [{"subject": "user:root", "role": "admin"}]}
        assert (await admin.delete("/v1/datasets/team/new")).status_code == 204
        assert (await admin.get("/v1/datasets/team/new")).status_code == 404


async def test_agent_status_reports(hub: RunningHub) -> None:
    agent = hub.token("edge-1", kind="agent")
    other = hub.token("edge-2", kind="agent")
    report = {"datasets": {"team/geo-db": {"tag": "stable", "manifest": "ab" * 32}}}
    async with hub.client(agent) as a, hub.client(other) as b, hub.client(hub.admin) as admin:
        assert (await a.put("/v1/agents/edge-1/status", json=report)).status_code == 204
        # An agent cannot report for another.
        assert (await b.put("/v1/agents/edge-1/status", json=report)).status_code == 403
        got = (await a.get("/v1/agents/edge-1/status")).json()
        assert got["report"] == report
        fleet = (await admin.get("/v1/agents")).json()
        assert [f["agent"] for f in fleet] == ["edge-1"]
        assert (await a.get("/v1/agents")).status_code == 403
