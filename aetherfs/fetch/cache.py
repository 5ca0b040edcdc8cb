"""A content-addressed cache of stored (encrypted) blocks on local disk, bounded in size.

Blocks are appended to segment files of up to SEGMENT_BYTES and indexed in SQLite
(`index.sqlite`: block id -> segment, offset, size): a 1 GiB pull of 64 KiB blocks writes a
few dozen files and one index transaction per batch, not 16,000 files.

Blocks are checked against their id on every read: bytes altered on disk are dropped from the
index and reported as a miss, never served. Eviction removes the least recently used segments
first; blocks a caller pins that sit in a segment being removed are copied to a new one first.

After a kill -9 the index names only bytes that were written (a segment's bytes are written
before the rows naming them are committed); bytes written but never indexed go with their
segment. A power cut may lose bytes the index still names: the check on read catches that.

A full disk, while the caller says which blocks it needs (`sparing`: the version being
pulled), is met by freeing the others, least recently used first; if that frees too little,
or outside `sparing`, a cache given `on_full` stops caching (reads go on) and says so once,
and one without raises CacheFull.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aetherfs.core.ids import BlockId
from aetherfs.errors import StoreUnavailable

SEGMENT_BYTES = 32 * 1024 * 1024
_QUERY_IDS = 500  # ids per SELECT ... IN (...): well under SQLite's parameter limit
_MOVE_BYTES = 4 * 1024 * 1024  # pinned blocks copied out of an evicted segment per batch
_OPEN_ATTEMPTS = 100  # of 50 ms, while another process holds a new index
_IOV_MAX = 1024  # buffers per pwritev: Linux's IOV_MAX
_INDEX = "index.sqlite"
_LEGACY_DIR = re.compile(r"[0-9a-f]{2}")
# Free space to make when the disk is full, beyond the batch that did not fit: enough that the
# next batches fit too, rather than evicting (and listing the spared blocks) once per batch.
_ROOM_BYTES = 64 * 1024 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Give a file's bytes in [offset, offset + length) back to the file system (reading as
    zeros), its size unchanged: Linux's fallocate(PUNCH_HOLE), which Python does not wrap."""
    mode = _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE
    if _libc.fallocate(fd, mode, ctypes.c_int64(offset), ctypes.c_int64(length)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class CacheFull(StoreUnavailable):
    """The disk under the cache has no room left (or the user's quota is used up)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bytes INTEGER NOT NULL DEFAULT 0,
    used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    id BLOB PRIMARY KEY,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_segment ON blocks (segment);
"""


@dataclass(frozen=True, slots=True)
class CacheStats:
    bytes: int  # on disk, in segments
    blocks: int


@dataclass(slots=True)
class _Segment:
    """A segment this process appends to; never shared between two writers."""

    seq: int
    fd: int
    size: int


@dataclass(frozen=True, slots=True)
class _Row:
    block_id: BlockId
    segment: int
    offset: int
    size: int


class BlockCache:
    def __init__(
        self,
        root: Path,
        limit: int,
        segment_bytes: int = SEGMENT_BYTES,
        on_full: Callable[[str], None] | None = None,
    ) -> None:
        """`on_full`: told, once, that the disk is full and caching stops (instead of raising)."""
        self.root = root
        self.limit = limit
        self.segment_bytes = segment_bytes
        self.corrupt_dropped = 0
        self._on_full = on_full
        self.writes_off = False  # the disk filled up and nothing could go: no more writes
        # What making room must not drop; None: the caller never said, so no room is made.
        self._spare: Callable[[], Iterable[BlockId]] | None = None
        self._room_lock = threading.Lock()  # one thread makes room at a time
        self._lock = threading.Lock()  # guards the fields below, never held around SQL
        self._ready = False
        # One connection per thread: readers run at once (WAL); writers queue in SQLite.
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._idle: list[_Segment] = []  # open for appending, not in use by a thread
        self._open: set[int] = set()  # every segment this process still appends to

    # -- the index -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection to the index, opened on first use."""
        me = threading.current_thread()
        with self._lock:
            db = self._conns.get(me)
            if db is not None:
                return db
            try:
                if not self._ready:
                    self._prepare()
                db = self._conns[me] = self._open_index()
            except (OSError, sqlite3.Error) as exc:
                raise self._unusable(exc) from None
            # Pool threads come and go (a pull, an agent build): close what they left.
            for thread in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(thread).close()
        return db

    def _prepare(self) -> None:
        self._segments_dir.mkdir(parents=True, exist_ok=True)
        self._remove_legacy_layout()
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                self._open_index().close()
                break
            except sqlite3.DatabaseError as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                    # Not a database any more (altered on disk): a cache can start again.
                    self._start_afresh()
                    self._open_index().close()
                    break
                # Another process creating the index at the same moment (or switching it to
                # WAL) holds it briefly: that is no reason to throw its blocks away.
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if attempt == _OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.05)
        self._ready = True

    def _open_index(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.root / _INDEX,
            timeout=30,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # closed by whichever thread finds its owner gone
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # A cache: no fsync per batch; bytes a power cut loses are caught on read.
            db.execute("PRAGMA synchronous=NORMAL")
            # Lookups are by key: a small page cache per connection (one per thread) is
            # enough, and keeps memory from growing with the index up to SQLite's 2 MB each.
            db.execute("PRAGMA cache_size=-256")
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM segments").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _start_afresh(self) -> None:
        for name in (_INDEX, f"{_INDEX}-wal", f"{_INDEX}-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()
        shutil.rmtree(self._segments_dir, ignore_errors=True)
        self._segments_dir.mkdir()

    @property
    def _segments_dir(self) -> Path:
        return self.root / "segments"

    def _segment_path(self, seq: int) -> Path:
        return self._segments_dir / f"{seq:010d}"

    def _remove_legacy_layout(self) -> None:
        """Earlier versions kept one file per block under two-hex-digit directories."""
        for entry in self.root.iterdir():
            if entry.is_dir() and _LEGACY_DIR.fullmatch(entry.name):
                shutil.rmtree(entry, ignore_errors=True)

    def _unusable(self, exc: BaseException) -> StoreUnavailable:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # say it as the OS would
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return CacheFull(f"cannot use the block cache {self.root}: {exc.strerror}")
        if isinstance(exc, OSError) and exc.strerror:
            return StoreUnavailable(f"cannot use the block cache {self.root}: {exc.strerror}")
        return StoreUnavailable(f"cannot use the block cache {self.root}: {exc}")

    def _cannot_write(self, exc: OSError) -> StoreUnavailable:
        kind = CacheFull if exc.errno in _FULL else StoreUnavailable
        return kind(f"cannot write to the block cache {self.root}: {exc.strerror}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside one write transaction."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None

    def _rows(self, ids: Sequence[BlockId]) -> list[_Row]:
        rows: list[_Row] = []
        db = self._conn()
        for start in range(0, len(ids), _QUERY_IDS):
            part = ids[start : start + _QUERY_IDS]
            marks = ",".join("?" * len(part))
            try:
                found = db.execute(
                    f"SELECT id, segment, offset, size FROM blocks WHERE id IN ({marks})",
                    [i.digest for i in part],
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None
            rows += [_Row(BlockId(d), seg, off, size) for d, seg, off, size in found]
        return rows

    # -- reading ---------------------------------------------------------------------------

    def has(self, ids: Iterable[BlockId]) -> set[BlockId]:
        """Those of `ids` the index names (not read, so not yet checked)."""
        return {row.block_id for row in self._readable_rows(list(ids))}

    def _readable_rows(self, ids: Sequence[BlockId]) -> list[_Row]:
        """`_rows`, or none if a full disk keeps the index from opening and the caller goes
        on without the cache (`on_full`)."""
        try:
            return self._rows(ids)
        except CacheFull as exc:
            self._stop_writing(exc)
            return []

    def get_many(self, ids: Sequence[BlockId]) -> dict[BlockId, bytes]:
        """Verified stored bytes of those of `ids` the cache holds."""
        found: dict[BlockId, bytes] = {}
        corrupt: list[BlockId] = []
        gone: list[BlockId] = []
        by_segment: dict[int, list[_Row]] = {}
        for row in self._readable_rows(ids):
            by_segment.setdefault(row.segment, []).append(row)
        for seq, rows in by_segment.items():
            try:
                fd = os.open(self._segment_path(seq), os.O_RDONLY)
            except FileNotFoundError:
                gone += [row.block_id for row in rows]  # evicted by another process meanwhile
                continue
            try:
                for row in sorted(rows, key=lambda r: r.offset):
                    data = os.pread(fd, row.size, row.offset)
                    if len(data) == row.size and BlockId.of(data) == row.block_id:
                        found[row.block_id] = data
                    else:
                        corrupt.append(row.block_id)
            finally:
                os.close(fd)
        if by_segment:
            # Best effort: reads must go on when the disk is full; the index is fixed next time.
            with contextlib.suppress(StoreUnavailable), self._transaction() as db:
                db.executemany(
                    "DELETE FROM blocks WHERE id = ?", [(i.digest,) for i in corrupt + gone]
                )
                now = time.time()
                db.executemany(
                    "UPDATE segments SET used = ? WHERE seq = ?", [(now, s) for s in by_segment]
                )
        self.corrupt_dropped += len(corrupt)
        return found

    # -- writing ---------------------------------------------------------------------------

    def put_many(self, blocks: Sequence[tuple[BlockId, bytes | memoryview]]) -> None:
        """Keep verified blocks (the caller has checked each against its id) in one segment.

        Blocks already held are skipped. On a full disk, room is made (`_make_room`) and the
        write tried once more; if it still fails the cache stops writing (`on_full`) or raises.
        """
        if self.writes_off:
            return
        try:
            self._put(blocks)
        except CacheFull as exc:
            with self._room_lock:
                if self.writes_off:
                    return
                need = sum(len(stored) for _, stored in blocks)
                try:
                    if self._spare is not None and self._make_room(self._spare, need):
                        self._put(blocks)
                        return
                except CacheFull:
                    pass
                self._stop_writing(exc)

    def _stop_writing(self, exc: CacheFull) -> None:
        if self._on_full is None:
            raise exc
        with self._lock:
            if self.writes_off:
                return
            self.writes_off = True
        self._on_full(
            f"the disk of the block cache {self.root} is full and nothing more in it may go; "
            "going on without caching blocks (free some space there to cache them again)"
        )

    @contextlib.contextmanager
    def sparing(self, blocks: Callable[[], Iterable[BlockId]]) -> Iterator[None]:
        """While inside, a full disk makes room by dropping blocks other than these (listed
        only when room must be made: a version's blocks are not held in memory for it)."""
        self._spare = blocks
        try:
            yield
        finally:
            self._spare = None

    def _put(
        self, blocks: Sequence[tuple[BlockId, bytes | memoryview]], move: bool = False
    ) -> None:
        """Write `blocks` in one segment; CacheFull if the disk has no room.

        Blocks already held are skipped, unless `move`: then the index points at the new copy.
        """
        present = set() if move else {r.block_id for r in self._rows([b for b, _ in blocks])}
        fresh: dict[BlockId, bytes | memoryview] = {}
        for block_id, stored in blocks:
            if block_id not in present:
                fresh.setdefault(block_id, stored)
        if not fresh:
            return
        segment = self._checkout()
        try:
            rows = []
            offset = segment.size
            for block_id, stored in fresh.items():
                rows.append((block_id.digest, segment.seq, offset, len(stored)))
                offset += len(stored)
            self._write_all(segment, list(fresh.values()))
            with self._transaction() as db:
                verb = "REPLACE" if move else "IGNORE"
                db.executemany(f"INSERT OR {verb} INTO blocks VALUES (?, ?, ?, ?)", rows)
                db.execute(
                    "UPDATE segments SET bytes = ?, used = ? WHERE seq = ?",
                    (offset, time.time(), segment.seq),
                )
            segment.size = offset
        finally:
            self._checkin(segment)

    def _write_all(self, segment: _Segment, pieces: list[bytes | memoryview]) -> None:
        # Writes go at the recorded end, not O_APPEND: bytes a failed write left past it are
        # overwritten by the next batch. One gathered write, no joined copy of the batch.
        views = [memoryview(piece) for piece in pieces]
        offset = segment.size
        try:
            while views:
                written = os.pwritev(segment.fd, views[:_IOV_MAX], offset)
                if written == 0 and any(views):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                offset += written
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]
        except OSError as exc:
            raise self._cannot_write(exc) from None

    def _checkout(self) -> _Segment:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO segments (bytes, used) VALUES (0, ?)", (time.time(),))
            seq = cursor.lastrowid
            assert seq is not None
            with self._lock:  # before the commit makes it visible to an eviction
                self._open.add(seq)
        try:
            fd = os.open(self._segment_path(seq), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            with self._lock:
                self._open.discard(seq)
            raise self._cannot_write(exc) from None
        return _Segment(seq, fd, 0)

    def _checkin(self, segment: _Segment) -> None:
        with self._lock:
            if segment.size < self.segment_bytes:
                self._idle.append(segment)
                return
            self._open.discard(segment.seq)
        os.close(segment.fd)

    def close(self) -> None:
        """Close open segments and the index; the cache can be used again afterwards."""
        with self._lock:
            for segment in self._idle:
                os.close(segment.fd)
                self._open.discard(segment.seq)
            self._idle.clear()
            for db in self._conns.values():
                db.close()
            self._conns.clear()

    # -- size and eviction -----------------------------------------------------------------

    def stats(self) -> CacheStats:
        db = self._conn()
        try:
            (size,) = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments").fetchone()
            (count,) = db.execute("SELECT COUNT(*) FROM blocks").fetchone()
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        return CacheStats(int(size), int(count))

    def usage(self) -> int:
        return self.stats().bytes

    def evict(self, pinned: Iterable[BlockId] = ()) -> int:
        """Drop least recently used segments until under the limit; return bytes freed.

        Pinned blocks in a dropped segment are moved to a new one; a segment holding only
        pinned blocks is left alone.
        """
        total = self.usage()
        if total <= self.limit:
            return 0
        keep = {block_id.digest for block_id in pinned}
        db = self._conn()
        order = db.execute("SELECT seq, bytes FROM segments ORDER BY used, seq").fetchall()
        freed = 0
        for seq, size in order:
            if total - freed <= self.limit:
                break
            rows = (
                self._conn()
                .execute("SELECT id, offset, size FROM blocks WHERE segment = ?", (seq,))
                .fetchall()
            )
            live = [_Row(BlockId(d), seq, off, n) for d, off, n in rows if d in keep]
            if rows and len(live) == len(rows):
                continue  # nothing here may go
            freed += self._drop_all_but(seq, size, live)
        return freed

    def discard(self, select: Callable[[list[BlockId]], set[BlockId]]) -> int:
        """Drop the blocks `select` picks, whatever the limit; return bytes freed.

        `select` is asked one segment's blocks at a time (so the caller's set of blocks is
        never listed whole): an agent drops what its trees can serve. A segment left with
        none is removed; the blocks it still holds are moved to a new one first.
        """
        db = self._conn()
        try:
            order = db.execute("SELECT seq, bytes FROM segments ORDER BY used, seq").fetchall()
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        freed = 0
        for seq, size in order:
            rows = db.execute(
                "SELECT id, offset, size FROM blocks WHERE segment = ?", (seq,)
            ).fetchall()
            going = select([BlockId(d) for d, _, _ in rows])
            if not going:
                continue
            live = [_Row(BlockId(d), seq, off, n) for d, off, n in rows if BlockId(d) not in going]
            freed += self._drop_all_but(seq, size, live)
        return freed

    def _drop_all_but(self, seq: int, size: int, live: list[_Row]) -> int:
        """Remove segment `seq` (of `size` bytes), its `live` blocks moved to a new one first;
        the bytes freed (0 if a thread is appending to it right now: it stays)."""
        if not self._retire(seq):
            return 0
        kept = self._drop_segment(seq, live)
        return size - kept if kept is not None else 0

    def _make_room(self, spare: Callable[[], Iterable[BlockId]], need: int) -> bool:
        """On a full disk: free the bytes of unspared blocks, least recently used segments
        first, until `need` bytes and some more are free. True if anything was freed.

        Nothing is moved (there is no room to move to). A segment of unspared blocks only is
        removed; in one that also holds spared blocks (versions share blocks, so most do),
        the bytes around them are punched out of the file. The bytes go before their rows, so
        the space is back before SQLite needs any: a row left naming them reads as a miss.
        """
        keep = {block_id.digest for block_id in spare()}
        db = self._conn()
        freed = False
        try:
            order = db.execute("SELECT seq FROM segments ORDER BY used, seq").fetchall()
            for (seq,) in order:
                if self._free_bytes() >= need + _ROOM_BYTES:
                    break
                rows = db.execute(
                    "SELECT id, offset, size FROM blocks WHERE segment = ?", (seq,)
                ).fetchall()
                spared = [(off, n) for digest, off, n in rows if digest in keep]
                if not self._retire(seq):
                    continue  # a thread is appending to it right now
                if not spared:
                    with contextlib.suppress(FileNotFoundError):
                        self._segment_path(seq).unlink()
                    freed = True
                    with self._transaction() as tx:
                        tx.execute("DELETE FROM blocks WHERE segment = ?", (seq,))
                        tx.execute("DELETE FROM segments WHERE seq = ?", (seq,))
                elif len(spared) < len(rows) and self._punch_around(seq, spared):
                    freed = True
                    kept = sum(n for _, n in spared)
                    gone = [(digest,) for digest, _, _ in rows if digest not in keep]
                    with self._transaction() as tx:
                        tx.executemany("DELETE FROM blocks WHERE id = ?", gone)
                        tx.execute("UPDATE segments SET bytes = ? WHERE seq = ?", (kept, seq))
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        return freed

    def _punch_around(self, seq: int, spared: list[tuple[int, int]]) -> bool:
        """Free the bytes of segment `seq` outside the (offset, size) ranges in `spared`,
        keeping its length and every spared byte; False if the file system cannot."""
        try:
            fd = os.open(self._segment_path(seq), os.O_WRONLY)
        except FileNotFoundError:
            return False
        try:
            at = 0
            for offset, size in [*sorted(spared), (os.fstat(fd).st_size, 0)]:
                if offset > at:
                    punch_hole(fd, at, offset - at)
                at = max(at, offset + size)
        except OSError:
            return False  # e.g. EOPNOTSUPP: this segment stays whole
        finally:
            os.close(fd)
        return True

    def _free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def _retire(self, seq: int) -> bool:
        """Stop appending to segment `seq`; False if a thread is writing to it now."""
        with self._lock:
            if seq not in self._open:
                return True
            for segment in self._idle:
                if segment.seq == seq:
                    self._idle.remove(segment)
                    self._open.discard(seq)
                    os.close(segment.fd)
                    return True
        return False

    def _drop_segment(self, seq: int, live: list[_Row]) -> int | None:
        """Remove segment `seq`, first moving its `live` blocks to a new one; return bytes kept,
        or None if the disk is too full to move them (then the segment stays).

        Moved before the segment goes, so a crash half-way loses no pinned block.
        """
        if live and self.writes_off:
            return None
        path = self._segment_path(seq)
        kept = 0
        try:
            with path.open("rb") as f:
                batch: list[tuple[BlockId, bytes]] = []
                batch_bytes = 0
                for row in sorted(live, key=lambda r: r.offset):
                    f.seek(row.offset)
                    data = f.read(row.size)
                    if BlockId.of(data) != row.block_id:
                        continue  # altered on disk: let it go with the segment
                    batch.append((row.block_id, data))
                    batch_bytes += len(data)
                    kept += len(data)
                    if batch_bytes >= _MOVE_BYTES:
                        self._put(batch, move=True)
                        batch, batch_bytes = [], 0
                if batch:
                    self._put(batch, move=True)
        except FileNotFoundError:
            kept = 0
        except CacheFull:
            return None  # the blocks moved so far are indexed at their new place
        with self._transaction() as db:
            db.execute("DELETE FROM blocks WHERE segment = ?", (seq,))
            db.execute("DELETE FROM segments WHERE seq = ?", (seq,))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return kept
