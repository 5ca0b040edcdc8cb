"""What an interrupted push already uploaded, on local disk, so that a retry skips it.

One file per store and dataset: `STATE/pushes/<store id>/<dataset>.journal`. Each time a pack's
PUT succeeds, one entry is appended and fsynced: the pack's id and size and the located records
of its blocks, then a BLAKE3 of all that, so an entry cut short by a kill (or damaged) is found
and dropped with anything after it. A retry reads the entries, keeps those whose pack the store
still holds (a pack gc removed, or a store that was reset, is not trusted) and puts their
records into the push's located table: those blocks are not packed and uploaded again. The
push that publishes its version removes the journal; a failed one leaves it for the next try.

A push holds an `flock` on the journal while it runs, so a second push of the same dataset
from this machine neither reads entries still being written nor interleaves its own: it runs
without one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from aetherfs.core.blocklist import RECORD_SIZE
from aetherfs.core.ids import DIGEST_SIZE, PackId
from aetherfs.errors import LocalIOError

_MAGIC = b"AFJ1"
_HEAD = struct.Struct("<4s32sQI")  # magic, pack id, pack bytes, block count
_CHECK = DIGEST_SIZE


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One uploaded pack and the located records (see BlockList) of the blocks in it."""

    pack: PackId
    size: int
    records: bytes

    def iter_records(self) -> Iterator[bytes]:
        for start in range(0, len(self.records), RECORD_SIZE):
            yield self.records[start : start + RECORD_SIZE]

    def to_bytes(self) -> bytes:
        head = _HEAD.pack(_MAGIC, self.pack.digest, self.size, len(self.records) // RECORD_SIZE)
        body = head + self.records
        return body + blake3.blake3(body).digest()


def read_entries(stream: BinaryIO) -> tuple[list[JournalEntry], int]:
    """The whole entries at the start of `stream`, and where the last one ends."""
    entries: list[JournalEntry] = []
    good = 0
    while True:
        head = stream.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return entries, good
        magic, pack, size, count = _HEAD.unpack(head)
        if magic != _MAGIC:
            return entries, good
        records = stream.read(count * RECORD_SIZE)
        check = stream.read(_CHECK)
        if len(records) != count * RECORD_SIZE or blake3.blake3(head + records).digest() != check:
            return entries, good
        entries.append(JournalEntry(PackId(pack), size, records))
        good += len(head) + len(records) + len(check)


def journal_path(directory: Path, store_id: str, dataset: str) -> Path:
    # `+` is not allowed in dataset names, so the flattened name stays unambiguous.
    return directory / store_id / f"{dataset.replace('/', '+')}.journal"


class PushJournal:
    """The journal of one push, held (flock) from `open` to `finish` or `close`."""

    def __init__(self, path: Path, file: BinaryIO, entries: list[JournalEntry]) -> None:
        self.path = path
        self._file = file
        self.entries = entries  # what earlier tries left, as read when opened
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path, store_id: str, dataset: str) -> PushJournal | None:
        """The dataset's journal, or None if another push from here holds it."""
        path = journal_path(directory, store_id, dataset)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("a+b")
        except OSError as exc:
            raise LocalIOError(
                f"cannot write the push journal {path}: {exc.strerror}; fix its directory "
                "(or XDG_STATE_HOME) and push again"
            ) from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        file.seek(0)
        entries, good = read_entries(file)
        file.truncate(good)  # a torn last entry: the next one goes where it began
        return cls(path, file, entries)

    def keep_only(self, entries: list[JournalEntry]) -> None:
        """Rewrite the journal with just `entries` (those found still on the store)."""
        with self._lock:
            self._file.seek(0)
            self._file.truncate()
            for entry in entries:
                self._file.write(entry.to_bytes())
            self._sync()
            self.entries = entries

    def record(self, entry: JournalEntry) -> None:
        """Append one uploaded pack; on disk once this returns."""
        with self._lock:
            self._file.write(entry.to_bytes())
            self._sync()

    def _sync(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise LocalIOError(
                f"cannot write the push journal {self.path}: {exc.strerror}; free space there "
                "and push again"
            ) from None

    def finish(self) -> None:
        """The version is published: what the journal held is named by it now."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        self._file.close()  # drops the flock
