"""Bytes a reader already has on disk: the cheapest block source, asked before all others.

`ops/reuse.py` finds them (chunking the files of the directory being replaced); here they are
read back, and re-hashed, when a block is wanted: the file may have changed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import blake3


@dataclass(frozen=True, slots=True)
class LocalChunk:
    path: Path
    offset: int
    size: int


def read_local_chunk(chunk: LocalChunk, digest: bytes) -> bytes | None:
    """The chunk's bytes if they still hash to `digest` (the file may have changed since)."""
    try:
        with chunk.path.open("rb") as f:
            f.seek(chunk.offset)
            data = f.read(chunk.size)
    except OSError:
        return None
    return data if blake3.blake3(data).digest() == digest else None
