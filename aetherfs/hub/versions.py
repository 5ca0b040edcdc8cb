"""One version of a dataset as a read-only `Tree` (aetherfs.http.files), read from the store.

Blocks are fetched, verified and decrypted on demand; a small LRU of plaintext blocks keeps
Range requests that walk a file from fetching one block over and over.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence

import blake3
import cachetools

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import DIRECTORY, FILE, SYMLINK, FileEntry, Manifest
from aetherfs.http import files

_KINDS = {FILE: files.FILE, DIRECTORY: files.DIRECTORY, SYMLINK: files.SYMLINK}

# Verified plaintext of each block of a dataset asked for, by id: one call may merge
# neighbouring blocks of a pack into one ranged read.
ReadBlocks = Callable[[str, Sequence[BlockRef]], dict[BlockId, bytes]]
BATCH_BYTES = 4 * 1024 * 1024  # stored bytes asked for at once while streaming a file


class BlockLru:
    """Plaintext of recently read blocks, bounded in bytes; thread-safe."""

    def __init__(self, read: ReadBlocks, limit: int = 64 * 1024 * 1024) -> None:
        self._read = read
        self.limit = limit
        # Sized by the bytes held; not thread-safe on its own, so every use holds the lock.
        self._blocks: cachetools.LRUCache[BlockId, bytes] = cachetools.LRUCache(limit, len)
        self._lock = threading.Lock()

    def __call__(self, dataset: str, refs: Sequence[BlockRef]) -> dict[BlockId, bytes]:
        found: dict[BlockId, bytes] = {}
        with self._lock:
            for ref in refs:
                hit = self._blocks.get(ref.id)
                if hit is not None:
                    found[ref.id] = hit
        missing = [ref for ref in refs if ref.id not in found]
        if missing:
            fetched = self._read(dataset, missing)
            found.update(fetched)
            with self._lock:
                for block_id, data in fetched.items():
                    if block_id in self._blocks or len(data) > self.limit // 4:
                        continue
                    self._blocks[block_id] = data
        return found


def file_etag(entry: FileEntry) -> str:
    """From the content alone: the same file in two versions has one ETag."""
    h = blake3.blake3(entry.size.to_bytes(8, "big"))
    for ref in entry.blocks:
        h.update(ref.digest)
    return h.hexdigest()[:40]


class ManifestTree:
    # lookup and children are dict reads: the file server calls them without a thread.
    blocking_lookups = False

    def __init__(
        self, manifest: Manifest, manifest_id: ManifestId, read_blocks: ReadBlocks
    ) -> None:
        self.manifest = manifest
        self.manifest_id = manifest_id
        self._read_blocks = read_blocks
        self._entries = {e.path: e for e in manifest.files}
        self._children: dict[str, set[str]] = {"": set()}
        for path in self._entries:
            child = path
            while child:
                parent = child.rpartition("/")[0]
                siblings = self._children.setdefault(parent, set())
                if child in siblings:
                    break  # the rest of the way up is recorded already
                siblings.add(child)
                child = parent
        self._offsets: dict[str, list[int]] = {}
        self._nodes: dict[str, files.Node] = {}

    def _node(self, path: str) -> files.Node:
        node = self._nodes.get(path)
        if node is not None:
            return node
        entry = self._entries.get(path)
        if entry is None:  # an implicit directory (a parent no entry names)
            return files.Node(path, files.DIRECTORY, mode=0o755)
        node = files.Node(
            path,
            _KINDS[entry.kind],
            entry.size,
            entry.mode,
            file_etag(entry) if entry.kind == FILE else "",  # hashes every block id: keep it
            entry.target,
        )
        self._nodes[path] = node
        return node

    def lookup(self, path: str) -> files.Node | None:
        if path in self._entries or path in self._children:
            return self._node(path)
        return None

    def children(self, path: str) -> list[files.Node]:
        return [self._node(p) for p in sorted(self._children.get(path, ()))]

    def read(self, path: str, start: int, length: int) -> Iterator[bytes]:
        entry = self._entries[path]
        offsets = self._offsets.get(path)
        if offsets is None:
            offsets, at = [], 0
            for ref in entry.blocks:
                offsets.append(at)
                at += ref.size
            self._offsets[path] = offsets
        end = min(start + length, entry.size)
        index = max(0, bisect.bisect_right(offsets, start) - 1)
        blocks = entry.blocks
        while start < end and index < len(blocks):
            batch: list[BlockRef] = []
            stored = 0
            while (
                index + len(batch) < len(blocks)
                and offsets[index + len(batch)] < end
                and (not batch or stored + blocks[index + len(batch)].stored_size <= BATCH_BYTES)
            ):
                stored += blocks[index + len(batch)].stored_size
                batch.append(blocks[index + len(batch)])
            plaintexts = self._read_blocks(self.manifest.dataset, batch)
            for ref in batch:
                block_start = offsets[index]
                data = plaintexts[ref.id]
                piece = data[start - block_start : min(end, block_start + ref.size) - block_start]
                if piece:
                    yield piece
                    start += len(piece)
                index += 1
