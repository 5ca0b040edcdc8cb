"""Blocks served from the agent's materialised trees, sealed again from their plaintext.

Once a version is live its tree holds every byte of it, so the block cache need not hold a
second, encrypted copy: a peer asking for a block gets it sealed again from the tree. Sealing is
convergent (the key is in the manifest's `BlockRef`, the nonce derives from the key), so the
bytes are the producer's when the compression is: the same zstd level (and library). Nothing
is trusted: the plaintext read from the tree must hash to the ref's digest (a file changed on
disk is never served), and the bytes sealed again must hash to the block id; when either
differs the block is refused (`NotFound`), so the engine answers NOT_HAVE and the peer gets
the piece elsewhere.

The level is the manifest's: push seals a file at DEFAULT_LEVEL, or at REBUILT_LEVEL when it was
rebuilt from scratch, and records the latter in the file's entry (`FileEntry.level`), so only
that level is tried. Manifests written before entries carried it say nothing, and there the
level is learnt per file: DEFAULT_LEVEL first, then the others push uses, the one that worked
kept for the file. A block stored uncompressed (its stored size says so) needs no level. A file
on which no level tried reproduces the id is given up (counted and logged once).

Memory: the index is a private SQLite database that spills to a temporary file (a few hundred
KiB of page cache whatever the size), one row per (block, version): no Python object per block.
It holds block keys, as the manifest spool does (`repository/spool.py`), and is gone with the
process. The same index gives a build the plaintext it already has (`get`: BlockFetcher's
local chunks), so a delta build takes unchanged blocks from the tree, not the store.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from aetherfs.core.blocklist import as_block_list
from aetherfs.core.blocks import DEFAULT_LEVEL, RAW_OVERHEAD, REBUILT_LEVEL, seal_with_key
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import FILE, Manifest
from aetherfs.errors import NotFound
from aetherfs.fetch.local import LocalChunk

LEVELS = (DEFAULT_LEVEL, REBUILT_LEVEL)  # every level push seals with (core/blocks.py)
_BATCH = 4096  # rows per executemany while indexing
_QUERY_IDS = 500  # ids per SELECT ... IN (...)
_CACHE_KIB = 512  # SQLite page cache: the index spills to its temporary file beyond this

_SCHEMA = """
CREATE TABLE files (
    version INTEGER NOT NULL,
    file INTEGER NOT NULL,
    path TEXT NOT NULL,
    level INTEGER,            -- its zstd level: the manifest's, or learnt; NULL: not known yet
    pinned INTEGER NOT NULL,  -- 1: the manifest names the level, no other is tried
    bad INTEGER NOT NULL DEFAULT 0,  -- no level reproduces its blocks: not served
    PRIMARY KEY (version, file)
) WITHOUT ROWID;
CREATE TABLE blocks (
    id BLOB NOT NULL,
    version INTEGER NOT NULL,
    file INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    key BLOB NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (id, version)
) WITHOUT ROWID;
CREATE INDEX blocks_by_digest ON blocks (digest);
"""

_SELECT = """
SELECT b.id, b.version, b.file, b.offset, b.size, b.stored, b.key, b.digest, f.path, f.level,
    f.pinned
FROM blocks b JOIN files f ON f.version = b.version AND f.file = b.file
WHERE f.bad = 0 AND b.{column} IN ({marks})
"""


@dataclass(frozen=True, slots=True)
class _Place:
    """Where one block's plaintext lies in a tree, and what it must seal to."""

    block_id: BlockId
    version: int
    file: int
    offset: int
    size: int
    stored: int
    key: bytes
    digest: bytes
    path: str
    level: int | None
    pinned: int


@dataclass(slots=True)
class ServedCounters:
    """Blocks served to peers, by where they came from, and those refused (status, metrics)."""

    cache_blocks: int = 0  # read from the block cache as stored
    cache_bytes: int = 0
    tree_blocks: int = 0  # sealed again from a tree
    tree_bytes: int = 0
    altered: int = 0  # refused: the tree's bytes no longer hash to the manifest's digest
    mismatched: int = 0  # refused: sealed again, the id differed (zstd level or library)

    def to_json(self) -> dict[str, int]:
        return {
            "cache_blocks": self.cache_blocks,
            "cache_bytes": self.cache_bytes,
            "tree_blocks": self.tree_blocks,
            "tree_bytes": self.tree_bytes,
            "altered": self.altered,
            "mismatched": self.mismatched,
        }


class TreeBlocks:
    """A `BlockStore` (has, read) over the versions on disk, and BlockFetcher's local chunks
    (`get`). Safe from any thread; index calls are blocking (run them on a worker thread)."""

    def __init__(self, log: Callable[..., Any] = lambda *_, **__: None) -> None:
        self.log = log
        self.counters = ServedCounters()
        self._lock = threading.Lock()
        # "": a private database in a temporary file SQLite removes when it is closed.
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._db.execute("PRAGMA temp_store=FILE")
        # Gone with the process, rebuilt at start: no fsync (its journal stays, for rollbacks).
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)
        self._versions: dict[ManifestId, tuple[int, Path]] = {}
        self._bases: dict[int, Path] = {}
        self._next = 1
        self._warned: set[tuple[int, int]] = set()  # (version, file) already logged

    # -- the index ---------------------------------------------------------------------------

    def index(self, manifest_id: ManifestId, manifest: Manifest, base: Path) -> int:
        """Index a version materialised at `base` (replacing an earlier index of it); returns
        the blocks indexed. The tree must be complete: build it first. Rows are written a
        batch at a time, each in its own transaction, so serving peers waits for one batch at
        most, never for a whole version (its rows are served as they land)."""
        self.forget(manifest_id)
        with self._lock:
            number = self._next
            self._next += 1
            self._bases[number] = base
        files: list[tuple[int, int, str, int | None, int]] = []
        rows: list[tuple[bytes, int, int, int, int, int, bytes, bytes]] = []
        count = 0
        try:
            for file_no, entry in enumerate(manifest.files):
                if entry.kind != FILE or not entry.blocks:
                    continue
                pinned = entry.level is not None
                files.append((number, file_no, entry.path, entry.level, int(pinned)))
                offset = 0
                records = as_block_list(entry.blocks).wire_fields()
                for block_id, key, size, digest, stored, _pack, _at in records:
                    rows.append((block_id, number, file_no, offset, size, stored, key, digest))
                    offset += size
                    if len(rows) >= _BATCH:
                        count += self._insert(files, rows)
                if len(files) >= _BATCH:
                    count += self._insert(files, rows)
            count += self._insert(files, rows)
        except BaseException:
            self._drop(number)
            raise
        with self._lock:
            self._versions[manifest_id] = (number, base)
        return count

    def _insert(
        self,
        files: list[tuple[int, int, str, int | None, int]],
        rows: list[tuple[bytes, int, int, int, int, int, bytes, bytes]],
    ) -> int:
        """Write and clear the pending rows, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO files (version, file, path, level, pinned)"
                    " VALUES (?, ?, ?, ?, ?)",
                    files,
                )
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                added = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        files.clear()
        rows.clear()
        return added

    def _drop(self, number: int) -> None:
        with self._lock:
            self._bases.pop(number, None)
            self._db.execute("DELETE FROM blocks WHERE version = ?", (number,))
            self._db.execute("DELETE FROM files WHERE version = ?", (number,))

    def forget(self, manifest_id: ManifestId) -> None:
        """A version removed from disk: its blocks are no longer served from it."""
        with self._lock:
            found = self._versions.pop(manifest_id, None)
        if found is not None:
            self._drop(found[0])

    def clear(self) -> None:
        """The data root was lost: nothing is served from it any more."""
        for manifest_id in self.indexed():
            self.forget(manifest_id)

    def indexed(self) -> set[ManifestId]:
        with self._lock:
            return set(self._versions)

    # -- lookups -------------------------------------------------------------------------------

    def _places(self, column: str, keys: Sequence[bytes]) -> list[_Place]:
        found: list[_Place] = []
        with self._lock:
            for start in range(0, len(keys), _QUERY_IDS):
                part = keys[start : start + _QUERY_IDS]
                sql = _SELECT.format(column=column, marks=",".join("?" * len(part)))
                for row in self._db.execute(sql, list(part)):
                    found.append(_Place(BlockId(row[0]), *row[1:]))
        return found

    def has(self, block_id: BlockId) -> bool:
        return bool(self._places("id", [block_id.digest]))

    def known(self, ids: Iterable[BlockId]) -> set[BlockId]:
        """Those of `ids` a tree can serve (as far as the index says: not read, not sealed)."""
        return {p.block_id for p in self._places("id", [i.digest for i in ids])}

    def get(self, digest: bytes) -> LocalChunk | None:
        """Where a tree holds plaintext with this BLAKE3 (BlockFetcher's local chunks; the
        fetcher reads and re-hashes it, so a file changed since is not used)."""
        for place in self._places("digest", [digest]):
            base = self._bases.get(place.version)
            if base is not None:
                return LocalChunk(base / place.path, place.offset, place.size)
        return None

    # -- serving -------------------------------------------------------------------------------

    def read(self, block_ids: Sequence[BlockId]) -> list[bytes]:
        """Each block sealed again from a tree, checked against its id; NotFound if one cannot
        be (not indexed, its tree changed on disk, or its bytes come out other than stored)."""
        places: dict[BlockId, list[_Place]] = {}
        for place in self._places("id", [b.digest for b in dict.fromkeys(block_ids)]):
            places.setdefault(place.block_id, []).append(place)
        out: list[bytes] = []
        for block_id in block_ids:
            stored = next(
                (s for p in places.get(block_id, ()) if (s := self._reseal(p)) is not None), None
            )
            if stored is None:
                raise NotFound(f"block {block_id.short()} cannot be served from this agent's trees")
            out.append(stored)
        with self._lock:
            self.counters.tree_blocks += len(out)
            self.counters.tree_bytes += sum(len(s) for s in out)
        return out

    def count_cache(self, blocks: Sequence[bytes]) -> None:
        """Blocks the cache served peers (beside these trees: one table of what was served)."""
        with self._lock:
            self.counters.cache_blocks += len(blocks)
            self.counters.cache_bytes += sum(len(s) for s in blocks)

    def served(self) -> dict[str, int]:
        with self._lock:
            return self.counters.to_json()

    def _reseal(self, place: _Place) -> bytes | None:
        base = self._bases.get(place.version)
        if base is None:
            return None
        plaintext = _pread(base / place.path, place.offset, place.size)
        if plaintext is None or blake3.blake3(plaintext).digest() != place.digest:
            self._refused(place, "altered", "the file changed on disk since it was written")
            return None
        if place.stored == place.size + RAW_OVERHEAD:
            levels: tuple[int | None, ...] = (None,)  # stored uncompressed: no level to know
        elif place.pinned:
            levels = (place.level,)  # the manifest's: the producer's bytes or none
        else:
            first = place.level if place.level is not None else DEFAULT_LEVEL
            levels = (first, *(level for level in LEVELS if level != first))
        for level in levels:
            stored = seal_with_key(plaintext, place.key, level)
            if BlockId.of(stored) == place.block_id:
                if level is not None and level != place.level:
                    with self._lock:
                        self._db.execute(
                            "UPDATE files SET level = ? WHERE version = ? AND file = ?",
                            (level, place.version, place.file),
                        )
                return stored
        with self._lock:
            self._db.execute(
                "UPDATE files SET bad = 1 WHERE version = ? AND file = ?",
                (place.version, place.file),
            )
        self._refused(
            place, "mismatched", "sealed again, it is not the producer's bytes (zstd level?)"
        )
        return None

    def _refused(self, place: _Place, kind: str, why: str) -> None:
        with self._lock:
            setattr(self.counters, kind, getattr(self.counters, kind) + 1)
            first = (place.version, place.file) not in self._warned
            self._warned.add((place.version, place.file))
        if first:
            self.log(
                f"peers.tree_{kind}",
                path=place.path,
                block=place.block_id.short(),
                why=why,
                fallback="the piece is served by another peer or the store",
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _pread(path: Path, offset: int, size: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.pread(fd, size, offset)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None


def tree_bytes(dirs: Iterable[Path]) -> int:
    """Bytes the files under `dirs` take on disk (allocated blocks), each inode counted once:
    versions share unchanged files by hard links."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in dirs:
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
