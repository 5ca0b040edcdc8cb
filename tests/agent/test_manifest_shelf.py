"""The agent's sealed manifests on disk and the RecordSource over them: a copy that no longer
hashes to its id is never served, a manifest is served only for the dataset it was verified
as, and a collected version's manifest goes unless a kept delta chain needs it."""

from __future__ import annotations

import os
from pathlib import Path

from aetherfs.agent.manifests import ManifestShelf, ServedManifests
from aetherfs.core.ids import ManifestId
from aetherfs.protocol.admission import DatasetAccess

GEO = DatasetAccess.from_dataset_key(b"g" * 32).access_id
TILES = DatasetAccess.from_dataset_key(b"t" * 32).access_id


def sealed() -> tuple[ManifestId, bytes]:
    data = os.urandom(1000)
    return ManifestId.of(data), data


def test_kept_read_back_and_a_damaged_copy_dropped(tmp_path: Path) -> None:
    shelf = ManifestShelf(tmp_path / "manifests")
    manifest_id, data = sealed()
    assert shelf.read(manifest_id) is None and not shelf.has(manifest_id)
    shelf.keep(manifest_id, data)
    assert shelf.read(manifest_id) == data and shelf.size(manifest_id) == len(data)
    assert [p.name for p in shelf.root.iterdir()] == [manifest_id.hex()]  # no temp file left
    shelf.path(manifest_id).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert shelf.read(manifest_id) is None and not shelf.has(manifest_id)


def test_served_only_for_the_dataset_it_was_verified_as(tmp_path: Path) -> None:
    shelf = ManifestShelf(tmp_path / "manifests")
    served = ServedManifests(shelf, {"team/geo": GEO, "team/tiles": TILES}.get)
    manifest_id, data = sealed()
    shelf.keep(manifest_id, data)
    assert served.sealed_manifest(GEO, manifest_id) is None  # on disk, but not opened yet
    served.add(manifest_id, "team/geo", None)
    assert served.sealed_manifest(GEO, manifest_id) == data
    assert served.sealed_manifest(TILES, manifest_id) is None  # a peer that proved tiles


def test_a_collected_version_goes_unless_a_kept_chain_needs_it(tmp_path: Path) -> None:
    served = ServedManifests(ManifestShelf(tmp_path), {"team/geo": GEO}.get)
    (v1, _), (v2, _), (v3, _) = sealed(), sealed(), sealed()
    served.add(v1, "team/geo", None)
    served.add(v2, "team/geo", v1)  # a delta on v1
    served.add(v3, "team/geo", None)
    assert served.collected([v1]) == []  # v2 is kept and needs its base
    assert served.knows(v1)
    assert sorted(served.collected([v1, v2]), key=lambda m: m.digest) == sorted(
        [v1, v2], key=lambda m: m.digest
    )
    assert not served.knows(v1) and not served.knows(v2) and served.knows(v3)
