"""The Store seam: a flat key/value namespace of immutable objects plus compare-and-swap.

Keys are '/'-separated ASCII paths built by `aetherfs.store.layout`; backends never interpret
them. All calls block: async callers go through a thread limiter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True, slots=True)
class Versioned:
    """An object's bytes and the opaque version (ETag) to hand back for compare-and-swap."""

    data: bytes
    version: str


class Store(Protocol):
    url: str

    def get(self, key: str) -> bytes:
        """The object's bytes; NotFound if absent."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes from `start`; NotFound if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a mix."""
        ...

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """Write only if nothing is there; True if this call created it.

        `data` may be a view of a buffer the caller reuses once this returns (push writes
        every pack from one of two such buffers), so a backend keeps no reference to it.
        """
        ...

    def put_file_if_absent(self, key: str, file: BinaryIO) -> bool:
        """`put_if_absent` of the bytes of `file` from where it stands to its end, read as
        they are sent: an object made on disk need not be whole in memory."""
        ...

    def get_versioned(self, key: str) -> Versioned:
        """The object and its version; NotFound if absent."""
        ...

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        """Compare-and-swap: write only if the current version is `version` (None: absent).

        Returns the new version; raises Conflict if another writer got there first.
        """
        ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, in lexical order."""
        ...

    def size(self, key: str) -> int: ...

    def mtime(self, key: str) -> float:
        """When the object was last written (seconds since the epoch)."""
        ...
