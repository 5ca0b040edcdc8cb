"""Find bytes a reader already has: chunks of files in a directory that a manifest needs.

Chunking the existing files with the manifest's parameters and hashing each chunk gives the
plaintext digests the manifest records, so matching needs no keys and trusts nothing: a local
chunk is only used if its BLAKE3 equals the digest in the (authenticated) manifest.

For each directory it fills, `aetherfs pull` keeps a record (`pull_records.py`: outside the
directory, under the CLI's state dir) of each file written: its stat (size, mtime_ns, inode,
mode) and the digests of its blocks. A record (the "marker" format, which earlier pulls left
inside the directory as `.aetherfs-pulled.json`) is one line of JSON
(the files, each with a fingerprint of its block list and where that list lies) followed by
the block lists as 40-byte records, read only when needed: a pull over a tree holds one
record per file, not per block. A file whose stat still matches is
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
import shutil
import stat
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from aetherfs.core.blocklist import BlockList
from aetherfs.core.chunking import ChunkParams, chunk_stream
from aetherfs.fetch.local import LocalChunk

# (plaintext digest, size) of each block, in order, as 40-byte records in one bytes object:
# a marker's records are held for every file of a version, ~165 bytes per block as tuples.
Blocks = bytes
_BLOCK = struct.Struct("<32sQ")


def pack_blocks(pairs: Iterable[tuple[bytes, int]]) -> Blocks:
    return b"".join(_BLOCK.pack(digest, size) for digest, size in pairs)


def iter_blocks(blocks: Blocks) -> Iterator[tuple[bytes, int]]:
    return _BLOCK.iter_unpack(blocks)


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
    count: int  # blocks
    fingerprint: bytes  # of its block list (`fingerprint`)
    # Its (plaintext digest, size) pairs, read when asked for (from the marker file); raises
    # ValueError if they do not match the record.
    blocks: Callable[[], Iterator[tuple[bytes, int]]]


def fingerprint(blocks: Iterable[tuple[bytes, int]]) -> bytes:
    """BLAKE3 of a block list's (digest, size) records: equal lists, equal fingerprints."""
    digest = blake3.blake3()
    for run in _runs(iter(blocks)):
        digest.update(pack_blocks(run))
    return digest.digest()


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


_RUN = 4096  # blocks per piece of a marker's block lists
MARKER_FORMAT = 2


class MarkerWriter:
    """Writes a record file by file: block lists to a scratch file as they come, then the JSON
    line, then the block lists after it. Nothing per block is held in memory."""

    def __init__(self, path: Path, head: dict[str, Any]) -> None:
        self.path = path
        self._head = head | {"v": MARKER_FORMAT}
        self._records: list[dict[str, Any]] = []
        # Closed by __exit__: the writer is a context manager.
        self._lists = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="aetherfs-marker-", dir=path.parent
        )

    def __enter__(self) -> MarkerWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self._lists.close()

    def add(self, path: str, stamp: Stamp, mode: int, blocks: BlockList) -> None:
        start = self._lists.tell() // _BLOCK.size
        digest = blake3.blake3()
        for run in _runs(blocks.digests_and_sizes()):
            data = pack_blocks(run)
            self._lists.write(data)
            digest.update(data)
        self._records.append(
            {
                "path": path,
                "size": stamp.size,
                "mtime_ns": stamp.mtime_ns,
                "ino": stamp.ino,
                "mode": mode,
                "blocks": [start, len(blocks)],
                "fingerprint": digest.hexdigest(),
            }
        )

    def finish(self) -> None:
        with self.path.open("wb") as out:
            out.write(json.dumps(self._head | {"files": self._records}).encode() + b"\n")
            self._lists.seek(0)
            shutil.copyfileobj(self._lists, out)
            out.flush()
            os.fsync(out.fileno())  # it must not outlive the tree it names only half written


def _runs(pairs: Iterator[tuple[bytes, int]]) -> Iterator[list[tuple[bytes, int]]]:
    while run := list(itertools.islice(pairs, _RUN)):
        yield run


def _blocks_in_marker(
    marker: Path, offset: int, count: int, size: int
) -> Callable[[], Iterator[tuple[bytes, int]]]:
    def read() -> Iterator[tuple[bytes, int]]:
        total = 0
        with marker.open("rb") as f:
            f.seek(offset)
            for start in range(0, count, _RUN):
                want = min(_RUN, count - start) * _BLOCK.size
                data = f.read(want)
                if len(data) != want:
                    raise ValueError(f"{marker}: a block list runs past the end")
                for digest, block_size in iter_blocks(data):
                    total += block_size
                    yield digest, block_size
        if total != size:
            raise ValueError(f"{marker}: a block list does not add up")

    return read


def _pulled_file_from_json(doc: dict[str, Any], marker: Path, region: int) -> PulledFile:
    stamp = Stamp(int(doc["size"]), int(doc["mtime_ns"]), int(doc["ino"]))
    if "digests" in doc:  # written before markers kept block lists after the JSON
        digests = base64.b64decode(doc["digests"], validate=True)
        sizes = [int(s) for s in doc["sizes"]]
        if len(digests) != 32 * len(sizes) or sum(sizes) != stamp.size:
            raise ValueError("block list does not add up")
        held = pack_blocks((digests[32 * i : 32 * i + 32], n) for i, n in enumerate(sizes))
        count, print_ = len(sizes), fingerprint(iter_blocks(held))

        def blocks() -> Iterator[tuple[bytes, int]]:
            return iter_blocks(held)
    else:
        start, count = (int(n) for n in doc["blocks"])
        if start < 0 or count < 0:
            raise ValueError("bad block list position")
        print_ = bytes.fromhex(str(doc["fingerprint"]))
        blocks = _blocks_in_marker(marker, region + start * _BLOCK.size, count, stamp.size)
    return PulledFile(str(doc["path"]), stamp, int(doc["mode"]), count, print_, blocks)


def read_record(path: Path) -> tuple[dict[str, Any], dict[str, PulledFile]] | None:
    """A record's head (what it was written for) and the files it vouches for; None if it is
    missing, old or corrupt.

    Only the JSON line is read here: each file's block list stays in the file until asked for.
    """
    try:
        with path.open("rb") as f:
            line = f.readline()
        doc = json.loads(line)
        files = doc.pop("files")
        found = {f.path: f for f in (_pulled_file_from_json(d, path, len(line)) for d in files)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None  # no usable record: every file is chunked and hashed instead
    return doc, found


def read_marker(path: Path) -> dict[str, PulledFile]:
    """The files a record vouches for; empty if it is missing, old or corrupt."""
    record = read_record(path)
    return record[1] if record else {}


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
        found: dict[bytes, LocalChunk] = {}
        offset = 0
        try:
            for digest, size in trusted.record.blocks():
                if digest in wanted and digest not in index.chunks:
                    found.setdefault(digest, LocalChunk(trusted.path, offset, size))
                offset += size
        except (OSError, ValueError):
            continue  # a damaged record: its chunks are fetched instead (they are re-hashed anyway)
        index.chunks.update(found)
    for path in scan.unvouched:
        _chunk_file(path, params, wanted, index.chunks)
        index.chunked_files += 1
    return index
