"""Find bytes a reader already has: chunks of files in a directory that a manifest needs.

Chunking the existing files with the manifest's parameters and hashing each chunk gives the
plaintext digests the manifest records, so matching needs no keys and trusts nothing: a local
chunk is only used if its BLAKE3 equals the digest in the (authenticated) manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import blake3

from aetherfs.core.chunking import ChunkParams, chunk_stream


@dataclass(frozen=True, slots=True)
class LocalChunk:
    path: Path
    offset: int
    size: int


def index_directory(
    root: Path, params: ChunkParams, wanted: set[bytes], skip: frozenset[str] = frozenset()
) -> dict[bytes, LocalChunk]:
    """Map plaintext digest -> where that chunk lies under `root`, for digests in `wanted`."""
    found: dict[bytes, LocalChunk] = {}
    if not root.is_dir() or not wanted:
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath) / name
            if name in skip or path.is_symlink() or not path.is_file():
                continue
            try:
                with path.open("rb") as stream:
                    for chunk in chunk_stream(stream, params):
                        digest = blake3.blake3(chunk.data).digest()
                        if digest in wanted and digest not in found:
                            found[digest] = LocalChunk(path, chunk.offset, len(chunk.data))
            except OSError:
                continue  # unreadable local file: fetch those blocks instead
    return found


def read_local_chunk(chunk: LocalChunk, digest: bytes) -> bytes | None:
    """The chunk's bytes if they still hash to `digest` (the file may have changed since)."""
    try:
        with chunk.path.open("rb") as f:
            f.seek(chunk.offset)
            data = f.read(chunk.size)
    except OSError:
        return None
    return data if blake3.blake3(data).digest() == digest else None
