"""A scratch file that holds the block records of large manifests on disk (`RecordSpool`).

It lives as long as the BlockLists that read from it (they hold it), and is unlinked from the
start: nothing is left behind, whatever happens to the process.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path


class FileRecordSpool:
    """Append-only records in an unlinked temporary file; reads are safe from any thread."""

    def __init__(self, directory: Path | None = None) -> None:
        # Closed when the last BlockList reading it is gone.
        self._file = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="aetherfs-records-", dir=directory
        )
        self._end = 0
        self._lock = threading.Lock()

    def append(self, data: bytes) -> int:
        with self._lock:
            start = self._end
            self._file.write(data)
            self._end += len(data)
        return start

    def read(self, start: int, length: int) -> bytes:
        if start + length > self._end:
            raise ValueError("read past the end of the record spool")
        with self._lock:
            self._file.flush()  # appended bytes may still be in the file object's buffer
        data = os.pread(self._file.fileno(), length, start)
        if len(data) != length:
            raise OSError(f"record spool gave {len(data)} of {length} bytes")
        return data
