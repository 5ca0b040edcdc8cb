"""A new version's manifest, built on disk entry by entry as a push finishes each file.

Held whole, a manifest costs about 150 bytes per block (2.3 MiB per GiB of data at 64 KiB
blocks), and sealing it whole took two more copies: a push's memory grew with its data. Here
each entry is packed into a spool file as it comes (a large file's blocks run by run), checked,
and compared with the same path in the base version, so the version can be stored as a delta.
`seal` then streams the document from the spool through the sealer into a second file, which is
what the store receives.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import blake3
import msgpack

from aetherfs.core.blocklist import PATCH_OP, RECORD_SIZE, RUN_RECORDS, BlockList, as_block_list
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import (
    FILE,
    MAX_DEPTH,
    EntryChecker,
    FileEntry,
    Manifest,
    document_pieces,
    format_for,
    pack_entry,
    seal_pieces,
)

READ_PIECE = 1024 * 1024  # spool bytes per read while sealing
PATCH_SPOOL_IN_MEMORY = 4 << 20  # a patch's records kept in memory up to this, then on disk


class PatchBuilder:
    """Compares a new block list with the base's, position by position, as it streams by.

    In-place rewrites (fixed or record-aligned blocks) and appends patch well; an insert that
    shifts every later block does not, and the patch is then given up (`result` is None) once
    it is no smaller than half the full list would be.
    """

    def __init__(self, base: BlockList, new_count: int) -> None:
        self._base = base.iter_records()
        self._limit = new_count * RECORD_SIZE // 2
        self._out = tempfile.SpooledTemporaryFile(max_size=PATCH_SPOOL_IN_MEMORY)  # noqa: SIM115
        self._literals = bytearray()
        self._keep = self._drop = 0
        self._size = 0
        self.given_up = False

    def feed(self, run: BlockList) -> None:
        if self.given_up:
            return
        for record in run.iter_records():
            old = next(self._base, None)
            if old == record and not self._literals and not self._drop:
                self._keep += 1
                continue
            if old == record:
                self._flush()
                self._keep = 1
                continue
            self._drop += old is not None
            self._literals += record
            if len(self._literals) >= RUN_RECORDS * RECORD_SIZE:
                self._flush()
            if self._size + len(self._literals) > self._limit:
                self.given_up = True
                self._out.close()
                return

    def _flush(self) -> None:
        op = PATCH_OP.pack(self._keep, self._drop, len(self._literals) // RECORD_SIZE)
        self._out.write(op)
        self._out.write(self._literals)
        self._size += len(op) + len(self._literals)
        self._keep = self._drop = 0
        self._literals.clear()

    def result(self) -> bytes | None:
        """The patch, or None if it does not pay."""
        if self.given_up:
            return None
        if self._keep or self._drop or self._literals:
            self._flush()
        if self._size > self._limit:
            return None
        self._out.seek(0)
        patch = self._out.read()
        self._out.close()
        return patch


def entry_fingerprint(entry: FileEntry) -> bytes:
    """BLAKE3 of the packed entry: two entries pack alike exactly when they are equal."""
    digest = blake3.blake3()
    for piece in pack_entry(msgpack.Packer(use_bin_type=True), entry):
        digest.update(piece)
    return digest.digest()


class ManifestBuilder:
    """Entries in, a sealed manifest out; memory grows with the number of paths, not blocks.

    `base` is the version this one follows (what `latest` names), if any. When the entries
    that differ from it (new, changed or removed) take at most half the document, the manifest
    is stored as a delta on it: unchanged files then cost nothing to a reader who holds the
    base, so a version that rewrites 2% of 200 files ships 2% of the block lists, and a changed
    file whose blocks were rewritten in place ships only those (`PatchBuilder`). A chain of
    MAX_DEPTH deltas is cut by a whole manifest.
    """

    def __init__(
        self,
        dataset: str,
        chunking: ChunkParams,
        meta: dict[str, str],
        base: tuple[ManifestId, Manifest] | None = None,
        directory: Path | None = None,
    ) -> None:
        self.dataset = dataset
        self.chunking = chunking
        self.meta = meta
        # Closed by __exit__: the builder is a context manager.
        self._spool: BinaryIO = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="aetherfs-manifest-", dir=directory
        )
        self._packer = msgpack.Packer(use_bin_type=True)
        self._checker = EntryChecker()
        self._count = 0
        self._version = 1  # the document format the entries need (`format_for`)
        # (spool, start, length) of each entry new or changed since the base.
        self._changed: list[tuple[BinaryIO, int, int]] = []
        self._base: tuple[ManifestId, int] | None = None
        self._before: dict[str, bytes] = {}  # path -> fingerprint, of the base's entries
        # The base's block lists (spooled on disk if the base is large), to patch against.
        self._base_blocks: dict[str, BlockList] = {}
        # Entries written as block patches, for a delta: a spool of their own.
        self._patches: BinaryIO = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="aetherfs-manifest-patches-", dir=directory
        )
        if base is not None and base[1].depth + 1 <= MAX_DEPTH:
            self._base = (base[0], base[1].depth)
            self._before = {entry.path: entry_fingerprint(entry) for entry in base[1].files}
            self._base_blocks = {
                e.path: as_block_list(e.blocks) for e in base[1].files if e.kind == FILE
            }

    def __enter__(self) -> ManifestBuilder:
        return self

    def __exit__(self, *_: object) -> None:
        self._spool.close()
        self._patches.close()

    def add(self, entry: FileEntry) -> None:
        """An entry whose blocks (if any) are in `entry.blocks`."""
        self._checker.add(entry)
        self._write(pack_entry(self._packer, entry), entry)

    def add_file(self, entry: FileEntry, block_count: int, runs: Iterable[BlockList]) -> None:
        """A FILE whose `block_count` blocks come in `runs`, in order (`entry.blocks` is empty)."""
        total = 0

        def counted() -> Iterator[BlockList]:
            nonlocal total
            for run in runs:
                total += run.total_size()
                yield run

        if entry.kind != FILE:
            raise ValueError(f"{entry.path!r} is not a file")
        base = self._base_blocks.pop(entry.path, None)
        patch = PatchBuilder(base, block_count) if base is not None else None

        def compared() -> Iterator[BlockList]:
            for run in counted():
                if patch is not None:
                    patch.feed(run)
                yield run

        changed = self._write(pack_entry(self._packer, entry, (block_count, compared())), entry)
        self._checker.add(entry, block_bytes=total)
        patched = patch.result() if patch is not None else None
        if changed and patched is not None:
            # Changed since the base, and cheaper as edits of its block list: a delta names
            # this instead (a full manifest still has the whole list).
            start = self._patches.tell()
            for piece in pack_entry(self._packer, replace(entry, patch=patched)):
                self._patches.write(piece)
            self._changed[-1] = (self._patches, start, self._patches.tell() - start)
            self._version = max(self._version, format_for(None, patched=True))

    def _write(self, pieces: Iterable[bytes], entry: FileEntry) -> bool:
        """Spool one packed entry; whether it is new or changed since the base."""
        path = entry.path
        self._version = max(self._version, format_for(entry.chunking))
        start = self._spool.tell()
        digest = blake3.blake3()
        for piece in pieces:
            self._spool.write(piece)
            digest.update(piece)
        self._count += 1
        if self._base is not None and self._before.pop(path, None) != digest.digest():
            self._changed.append((self._spool, start, self._spool.tell() - start))
            return True
        return False

    def seal(self, dataset_key: bytes, sink: Callable[[bytes], object]) -> ManifestId:
        """Check the version as a whole, then seal its document (a delta if that pays) into
        `sink`; returns the manifest id."""
        self._checker.finish()
        header = Manifest(self.dataset, time.time(), self.chunking, (), self.meta)
        spans = [(self._spool, 0, self._spool.tell())]
        if self._base is not None:
            removed = tuple(sorted(self._before))
            # A delta when it is at most half the whole document: a file's block patch may
            # make even a one-file version's delta small.
            delta_bytes = sum(length for _, _, length in self._changed)
            delta_bytes += sum(len(path) + 2 for path in removed)
            if delta_bytes <= self._spool.tell() // 2:
                base_id, depth = self._base
                header = replace(header, base=base_id, removed=removed, depth=depth + 1)
                spans = self._changed
        count = self._count if header.base is None else len(spans)
        pieces = document_pieces(header, count, self._read_spans(spans), self._version)
        return seal_pieces(pieces, self.dataset, dataset_key, sink)

    def _read_spans(self, spans: list[tuple[BinaryIO, int, int]]) -> Iterator[bytes]:
        for spool, start, length in spans:
            spool.seek(start)
            while length:
                piece = spool.read(min(length, READ_PIECE))
                if not piece:
                    raise OSError("manifest spool is shorter than what was written to it")
                length -= len(piece)
                yield piece
