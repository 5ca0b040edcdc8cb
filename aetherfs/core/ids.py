"""Content addresses: small value classes instead of bare strings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import blake3

from aetherfs.errors import InvalidInput, echo

DIGEST_SIZE = 32


@dataclass(frozen=True, slots=True, order=True)
class _Digest:
    digest: bytes
    kind: ClassVar[str] = "digest"

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_SIZE:
            raise InvalidInput(f"a {self.kind} id is {DIGEST_SIZE} bytes, got {len(self.digest)}")

    @classmethod
    def of(cls, data: bytes | memoryview) -> Self:
        """The id of `data`: its BLAKE3 hash."""
        return cls(blake3.blake3(data).digest())

    @classmethod
    def from_hex(cls, text: str) -> Self:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise InvalidInput(f"not a {cls.kind} id (64 hex digits): {echo(text)}") from None
        return cls(raw)

    def hex(self) -> str:
        return self.digest.hex()

    def short(self) -> str:
        return self.digest.hex()[:12]

    def __str__(self) -> str:
        return self.hex()


@dataclass(frozen=True, slots=True, order=True)
class BlockId(_Digest):
    """BLAKE3 of a block's stored (encrypted) bytes."""

    kind: ClassVar[str] = "block"


@dataclass(frozen=True, slots=True, order=True)
class PackId(_Digest):
    """BLAKE3 of a pack object: many stored blocks laid end to end."""

    kind: ClassVar[str] = "pack"


@dataclass(frozen=True, slots=True, order=True)
class ManifestId(_Digest):
    """BLAKE3 of a manifest's stored (encrypted) bytes."""

    kind: ClassVar[str] = "manifest"
