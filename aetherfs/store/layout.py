"""Where each kind of object lives on a store (see docs/architecture.md, "Store layout")."""

from __future__ import annotations

from aetherfs.core.ids import BlockId, ManifestId

STORE_INFO = "aetherfs.json"
BLOCKS = "blocks/"
MANIFESTS = "manifests/"
TAGS = "tags/"
DATASETS = "datasets/"


def block_key(block_id: BlockId) -> str:
    # Two hex digits of fan-out keep local directories small and spread S3 partitions.
    h = block_id.hex()
    return f"{BLOCKS}{h[:2]}/{h}"


def manifest_key(manifest_id: ManifestId) -> str:
    return f"{MANIFESTS}{manifest_id.hex()}"


def tag_key(dataset: str, tag: str) -> str:
    return f"{TAGS}{dataset}/@{tag}"


def tags_prefix(dataset: str) -> str:
    return f"{TAGS}{dataset}/@"


def dataset_key(dataset: str) -> str:
    return f"{DATASETS}{dataset}/@dataset.json"
