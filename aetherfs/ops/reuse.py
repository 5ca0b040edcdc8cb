"""Find bytes a reader already has: chunks of files in a directory that a manifest needs.

Chunking the existing files with the manifest's parameters and hashing each chunk gives the
plaintext digests the manifest records, so matching needs no keys and trusts nothing: a local
chunk is only used if its BLAKE3 equals the digest in the (authenticated) manifest.

A directory filled by `aetherfs pull` carries a marker recording, per file written, its stat
(size, mtime_ns, inode, mode) and the digests of its blocks. A file whose stat still matches is
known to hold those blocks without reading it (rsync's quick check, made race-free at write
time, see `pull.py`): its chunks are indexed from the record, and a file the new version keeps
unchanged can be hard-linked instead of rewritten. Any other file is chunked as above.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import blake3

from aetherfs.core.blocklist import BlockList
from aetherfs.core.chunking import ChunkParams, chunk_stream

# (plaintext digest, size) of each block, in order, as 40-byte records in one bytes object:
# a marker's records are held for every file of a version, ~165 bytes per block as tuples.
Blocks = bytes
_BLOCK = struct.Struct("<32sQ")


def pack_blocks(pairs: Iterable[tuple[bytes, int]]) -> Blocks:
    return b"".join(_BLOCK.pack(digest, size) for digest, size in pairs)


def iter_blocks(blocks: Blocks) -> Iterator[tuple[bytes, int]]:
    return _BLOCK.iter_unpack(blocks)


@dataclass(frozen=True, slots=True)
class LocalChunk:
    path: Path
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Stamp:
    """What changes when a file's bytes change (short of someone forging the mtime)."""

    size: int
    mtime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class PulledFile:
    """One regular file as a pull wrote it: where, its stat then, its mode and its blocks."""

    path: str  # relative, '/'-separated
    stamp: Stamp
    mode: int
    blocks: Blocks


@dataclass(frozen=True, slots=True)
class TrustedFile:
    """A file under the directory whose stat still matches its record."""

    path: Path
    record: PulledFile
    mode: int  # its permission bits now (a chmod leaves the mtime alone)


@dataclass(slots=True)
class DirectoryIndex:
    chunks: dict[bytes, LocalChunk]
    trusted: dict[str, TrustedFile]  # by relative path
    chunked_files: int = 0  # files read and chunked because no record vouched for them


_RUN = 3 * 1024  # blocks per piece of a marker record: a multiple of 3, so base64 pieces join


def write_pulled_file(out: TextIO, path: str, stamp: Stamp, mode: int, blocks: BlockList) -> None:
    """One marker record, as JSON, its block list written a run at a time (digests, then
    sizes): the record of one large file (a 20 GiB database has 320,000 blocks) is never whole
    in memory."""
    head = {"path": path, "size": stamp.size, "mtime_ns": stamp.mtime_ns, "ino": stamp.ino}
    out.write(json.dumps(head | {"mode": mode})[:-1] + ', "digests": "')
    for run in _runs(blocks.digests_and_sizes()):
        out.write(base64.b64encode(b"".join(digest for digest, _ in run)).decode())
    out.write('", "sizes": [')
    separator = ""
    for run in _runs(blocks.digests_and_sizes()):
        out.write(separator + ", ".join(str(size) for _, size in run))
        separator = ", "
    out.write("]}")


def _runs(pairs: Iterator[tuple[bytes, int]]) -> Iterator[list[tuple[bytes, int]]]:
    while run := list(itertools.islice(pairs, _RUN)):
        yield run


def _pulled_file_from_json(doc: dict[str, Any]) -> PulledFile:
    digests = base64.b64decode(doc["digests"], validate=True)
    sizes = [int(s) for s in doc["sizes"]]
    if len(digests) != 32 * len(sizes) or sum(sizes) != int(doc["size"]):
        raise ValueError("block list does not add up")
    blocks = pack_blocks((digests[32 * i : 32 * i + 32], size) for i, size in enumerate(sizes))
    stamp = Stamp(int(doc["size"]), int(doc["mtime_ns"]), int(doc["ino"]))
    return PulledFile(str(doc["path"]), stamp, int(doc["mode"]), blocks)


def read_marker(path: Path) -> dict[str, PulledFile]:
    """The files a previous pull recorded in its marker; empty if missing, old or corrupt."""
    try:
        doc = json.loads(path.read_text())
        return {f.path: f for f in map(_pulled_file_from_json, doc["files"])}
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return {}  # no usable record: every file is chunked and hashed instead


def _chunk_file(
    path: Path, params: ChunkParams, wanted: set[bytes], found: dict[bytes, LocalChunk]
) -> None:
    try:
        with path.open("rb") as stream:
            for chunk in chunk_stream(stream, params):
                digest = blake3.blake3(chunk.data).digest()
                if digest in wanted and digest not in found:
                    found[digest] = LocalChunk(path, chunk.offset, len(chunk.data))
    except OSError:
        pass  # unreadable local file: fetch those blocks instead


@dataclass(slots=True)
class DirectoryScan:
    trusted: dict[str, TrustedFile]  # by relative path
    unvouched: list[Path]  # regular files no record vouches for


def scan_pulled_directory(
    root: Path, records: dict[str, PulledFile], skip: frozenset[str] = frozenset()
) -> DirectoryScan:
    """The regular files under `root`: those whose stat matches their record, and the rest.

    Symlinks are never followed, so a record can only vouch for a regular file inside `root`.
    """
    scan = DirectoryScan({}, [])
    if not root.is_dir():
        return scan
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath) / name
            if name in skip:
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            record = records.get(path.relative_to(root).as_posix())
            if record is None or Stamp.of(st) != record.stamp:
                scan.unvouched.append(path)
            else:
                scan.trusted[record.path] = TrustedFile(path, record, stat.S_IMODE(st.st_mode))
    return scan


def index_chunks(scan: DirectoryScan, params: ChunkParams, wanted: set[bytes]) -> DirectoryIndex:
    """Where each chunk in `wanted` lies: trusted files from their record, the rest by chunking.

    Only `wanted` is indexed, so a pull looks for the blocks of the files it will write, not of
    those it links (for a small delta, a few blocks instead of one entry per block).
    """
    index = DirectoryIndex({}, scan.trusted)
    if not wanted:
        return index
    for trusted in scan.trusted.values():
        offset = 0
        for digest, size in iter_blocks(trusted.record.blocks):
            if digest in wanted and digest not in index.chunks:
                index.chunks[digest] = LocalChunk(trusted.path, offset, size)
            offset += size
    for path in scan.unvouched:
        _chunk_file(path, params, wanted, index.chunks)
        index.chunked_files += 1
    return index


def read_local_chunk(chunk: LocalChunk, digest: bytes) -> bytes | None:
    """The chunk's bytes if they still hash to `digest` (the file may have changed since)."""
    try:
        with chunk.path.open("rb") as f:
            f.seek(chunk.offset)
            data = f.read(chunk.size)
    except OSError:
        return None
    return data if blake3.blake3(data).digest() == digest else None
