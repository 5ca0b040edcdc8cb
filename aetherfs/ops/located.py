"""The blocks a push knows to be on the store, by id: a table on disk, not in memory.

A push checks every block it seals against the blocks already stored (those of the versions the
dataset's tags name, and those packed so far) and builds each file's entry from their located
records at the end. Held in a dict this grew by ~475 bytes of RSS per block (a 4 GiB push: 89 ->
120 MB while it ran); in a throw-away SQLite table it costs a few MB whatever the size.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from aetherfs.core.ids import DIGEST_SIZE

_QUERY_IDS = 500  # ids per SELECT ... IN (...): well under SQLite's parameter limit
_SCHEMA = """
CREATE TABLE located (id BLOB PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE used (id BLOB PRIMARY KEY) WITHOUT ROWID;
"""


def split_ids(ids: bytes) -> list[bytes]:
    """Block id digests laid end to end, one by one."""
    return [ids[start : start + DIGEST_SIZE] for start in range(0, len(ids), DIGEST_SIZE)]


class LocatedBlocks:
    """Block id digest -> its located 144-byte record (see BlockList); safe across threads."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="aetherfs-push-", dir=directory)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            Path(self._dir.name) / "located.sqlite",
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # used by sealing and upload threads, under the lock
        )
        # Scratch for one push: nothing here needs to survive a crash.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-4096")  # KiB
        self._db.executescript(_SCHEMA)

    def __contains__(self, block_id: bytes) -> bool:
        with self._lock:
            found = self._db.execute("SELECT 1 FROM located WHERE id = ?", (block_id,))
            return found.fetchone() is not None

    def add(self, records: Iterable[bytes]) -> None:
        """Keep located records (a block already known keeps its first location)."""
        rows = ((record[:DIGEST_SIZE], record) for record in records)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO located VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def records(self, ids: bytes) -> bytes:
        """The records of `ids` (digests end to end), in that order; KeyError if one is missing."""
        wanted = split_ids(ids)
        found: dict[bytes, bytes] = {}
        with self._lock:
            for start in range(0, len(wanted), _QUERY_IDS):
                part = list(dict.fromkeys(wanted[start : start + _QUERY_IDS]))
                marks = ",".join("?" * len(part))
                query = f"SELECT id, record FROM located WHERE id IN ({marks})"
                found.update(self._db.execute(query, part).fetchall())
        return b"".join(found[block_id] for block_id in wanted)

    def note_used(self, ids: bytes) -> None:
        """Count `ids` (digests end to end) as used by the version being built."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO used VALUES (?)", ((i,) for i in split_ids(ids))
            )
            self._db.execute("COMMIT")

    def used_count(self) -> int:
        """Distinct blocks noted as used."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM used").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> LocatedBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
