"""Where blocks, manifests, tags and dataset metadata persist: one interface, two backends."""

from aetherfs.store.base import Store, Versioned
from aetherfs.store.open import open_store

__all__ = ["Store", "Versioned", "open_store"]
