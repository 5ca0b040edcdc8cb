"""The store-backed repository's operations the hub stands on (expect_seq, verified manifests,
dataset info/create/delete), and the hub answering through them as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from aetherfs.core.ids import ManifestId
from aetherfs.errors import Conflict, IntegrityError, NotFound
from aetherfs.repository import StoreRepository
from aetherfs.store import layout
from tests.hub.helpers import RunningHub, publish


def test_set_tag_with_expect_seq(repo: StoreRepository, tmp_path: Path) -> None:
    v1 = publish(repo, tmp_path / "v1", "team/a", ["1.0.0"]).manifest_id
    v2 = publish(repo, tmp_path / "v2", "team/a", ["2.0.0"], seed=2).manifest_id
    with pytest.raises(Conflict, match="team/a:stable is at seq 0, not 1: it moved meanwhile"):
        repo.set_tag("team/a", "stable", v1, expect_seq=1)
    first = repo.update_tag("team/a", "stable", v1, expect_seq=0)
    assert first.moved and first.signed.record.seq == 1
    again = repo.update_tag("team/a", "stable", v1)  # already there: nothing written
    assert not again.moved and again.signed == first.signed
    with pytest.raises(Conflict, match="at seq 1, not 0"):
        repo.set_tag("team/a", "stable", v2, expect_seq=0)
    assert repo.set_tag("team/a", "stable", v2, expect_seq=1).record.seq == 2
    assert [r.record.seq for r in repo.tag_history("team/a", "stable").records] == [1, 2]


def test_a_damaged_history_is_named_with_its_repair(repo: StoreRepository, tmp_path: Path) -> None:
    v1 = publish(repo, tmp_path / "v1", "team/a", ["stable"]).manifest_id
    repo.store.put(layout.tag_key("team/a", "stable"), b"not a history")
    with pytest.raises(IntegrityError, match="aetherfs tag --repair team/a:stable"):
        repo.set_tag("team/a", "stable", v1)


def test_verified_manifest(repo: StoreRepository, tmp_path: Path) -> None:
    a = publish(repo, tmp_path / "a", "team/a", ["1.0.0"]).manifest_id
    checked = repo.verified_manifest("team/a", a)
    assert ManifestId.of(checked.stored) == a and checked.manifest.dataset == "team/a"
    with pytest.raises(IntegrityError):  # opens only with its own dataset's key
        repo.verified_manifest("team/b", a)
    with pytest.raises(NotFound, match="missing"):
        repo.verified_manifest("team/a", ManifestId.of(b"nothing"))
    with pytest.raises(IntegrityError, match="do not hash to manifest"):
        repo.verified_manifest("team/a", a, checked.stored + b"x")
    # An upload: stored only if its packs are allowed; False when it is there already.
    assert not repo.put_manifest("team/a", a, checked.stored)
    with pytest.raises(NotFound, match="upload it through team/a first"):
        repo.put_manifest("team/a", a, checked.stored, may_use=lambda _pack: False)


def test_dataset_info_create_delete(repo: StoreRepository, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="dataset team/new does not exist"):
        repo.dataset_info("team/new")
    made = repo.create_dataset("team/new")
    assert repo.dataset_exists("team/new") and repo.dataset_info("team/new") == made
    with pytest.raises(Conflict, match="already exists"):
        repo.create_dataset("team/new")
    publish(repo, tmp_path / "v1", "team/new", ["stable"])
    publish(repo, tmp_path / "v2", "team/new/sub", ["stable"])  # a name below it
    repo.delete_dataset("team/new")
    assert not repo.dataset_exists("team/new") and repo.scan_tags("team/new").histories == {}
    assert list(repo.list_tags("team/new/sub")) == ["stable"]  # untouched
    with pytest.raises(NotFound):
        repo.delete_dataset("team/new")


async def test_the_hub_answers_as_before(hub: RunningHub, tmp_path: Path) -> None:
    a = publish(hub.repo, tmp_path / "a", "team/a", ["1.0.0"]).manifest_id
    b = publish(hub.repo, tmp_path / "b", "team/b", ["1.0.0"]).manifest_id
    async with hub.client(hub.admin) as admin:
        r = await admin.post("/v1/datasets", json={"name": "team/a"})
        assert r.status_code == 409 and "already exists" in r.text
        url = "/v1/datasets/team/a/-/tags/stable"
        r = await admin.put(url, json={"manifest": b.hex()})  # team/b's manifest
        assert r.status_code == 404 and "is not a manifest of team/a" in r.text
        r = await admin.get(f"/v1/datasets/team/a/-/manifests/{b.hex()}")
        assert r.status_code == 404 and "is not a manifest of team/a" in r.text
        r = await admin.put(url, json={"manifest": a.hex(), "expect_seq": 3})
        assert r.status_code == 409 and "at seq 0, not 3" in r.text
        r = await admin.put(url, json={"manifest": a.hex()}, headers={"If-Match": '"1"'})
        assert r.status_code == 412
        r = await admin.put(url, json={"manifest": a.hex(), "expect_seq": 0})
        assert r.status_code == 200 and r.headers["etag"] == '"1"'
        doc = (await admin.get("/v1/datasets/team/a")).json()
        assert doc["created"] > 0 and doc["damaged"] == {} and "stable" in doc["tags"]
        assert (await admin.delete("/v1/datasets/team/a")).status_code == 204
        assert (await admin.get("/v1/datasets/team/a")).status_code == 404
        assert (await admin.delete("/v1/datasets/team/a")).status_code == 404
        entries = (await admin.get("/v1/audit")).json()
        actions = [e["action"] for e in entries]
        assert actions.count("tag.set") == 1 and "dataset.delete" in actions
