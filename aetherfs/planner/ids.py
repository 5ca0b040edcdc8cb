"""Who the planner talks about: peers, pieces, and the store as a source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aetherfs.core.ids import ManifestId


@dataclass(frozen=True, slots=True, order=True)
class PeerId:
    """An agent on the LAN, as the peer protocol names it (its identity key's bytes)."""

    raw: bytes

    def __hash__(self) -> int:
        return hash(self.raw)  # bytes cache their hash; the generated one builds a tuple

    def hex(self) -> str:
        return self.raw.hex()

    def short(self) -> str:
        return self.raw.hex()[:12]

    def __str__(self) -> str:
        return self.short()


@dataclass(frozen=True, slots=True, order=True)
class PieceRef:
    """One piece of one version: its index in the version's piece table."""

    version: ManifestId
    index: int

    def __str__(self) -> str:
        return f"{self.version.short()}#{self.index}"


@dataclass(frozen=True, slots=True)
class StoreSource:
    """The store (S3 or a local directory) as a source of pieces: one ranged GET per piece."""

    def __str__(self) -> str:
        return "store"


STORE: Final = StoreSource()
Source = PeerId | StoreSource
