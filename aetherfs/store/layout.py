"""Where each kind of object lives on a store (see docs/architecture.md, "Store layout")."""

from __future__ import annotations

from aetherfs.core.ids import ManifestId, PackId

STORE_INFO = "aetherfs.json"
PACKS = "packs/"
MANIFESTS = "manifests/"
TAGS = "tags/"
DATASETS = "datasets/"


def pack_key(pack_id: PackId) -> str:
    # Two hex digits of fan-out keep local directories small and spread S3 partitions.
    h = pack_id.hex()
    return f"{PACKS}{h[:2]}/{h}"


def manifest_key(manifest_id: ManifestId) -> str:
    return f"{MANIFESTS}{manifest_id.hex()}"


def tag_key(dataset: str, tag: str) -> str:
    return f"{TAGS}{dataset}/@{tag}"


def tags_prefix(dataset: str) -> str:
    return f"{TAGS}{dataset}/@"


def dataset_key(dataset: str) -> str:
    return f"{DATASETS}{dataset}/@dataset.json"


PUSHES = "pushes/"
LEASE = "@lease"


def push_key(dataset: str, lease_id: str, name: str) -> str:
    """An object of a push in progress: its lease (`LEASE`), or a pack it will name."""
    return f"{PUSHES}{dataset}/{lease_id}/{name}"
