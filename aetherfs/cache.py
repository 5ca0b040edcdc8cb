"""A content-addressed cache of stored (encrypted) blocks on local disk, bounded in size.

Blocks are checked against their id on every read: a file altered on disk is removed and
reported as a miss, never served. Eviction drops the least recently used blocks first (reads
refresh a block's mtime), sparing the ids a caller pins.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from aetherfs.core.ids import BlockId
from aetherfs.errors import StoreUnavailable


class BlockCache:
    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.corrupt_dropped = 0
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, block_id: BlockId) -> Path:
        h = block_id.hex()
        return self.root / h[:2] / h

    def __contains__(self, block_id: BlockId) -> bool:
        return self._path(block_id).is_file()

    def get(self, block_id: BlockId) -> bytes | None:
        path = self._path(block_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if BlockId.of(data) != block_id:
            self.corrupt_dropped += 1
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def put(self, block_id: BlockId, stored: bytes) -> None:
        """Keep a verified block; the caller has checked it against its id."""
        path = self._path(block_id)
        if path.exists():
            return
        path.parent.mkdir(exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(stored)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
            raise StoreUnavailable(f"cannot write to the block cache {self.root}: {exc}") from None

    def usage(self) -> int:
        return sum(entry.stat().st_size for entry in self._entries())

    def _entries(self) -> list[Path]:
        return [p for p in self.root.glob("??/*") if not p.name.startswith(".tmp-")]

    def evict(self, pinned: Iterable[BlockId] = ()) -> int:
        """Drop least recently used blocks until under the limit; return bytes freed."""
        keep = {block_id.hex() for block_id in pinned}
        entries = []
        total = 0
        for path in self._entries():
            st = path.stat()
            total += st.st_size
            if path.name not in keep:
                entries.append((st.st_mtime, st.st_size, path))
        freed = 0
        for _, size, path in sorted(entries):
            if total - freed <= self.limit:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            freed += size
        return freed
