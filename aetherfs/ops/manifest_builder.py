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

from aetherfs.core.blocklist import BlockList
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


def entry_fingerprint(entry: FileEntry) -> bytes:
    """BLAKE3 of the packed entry: two entries pack alike exactly when they are equal."""
    digest = blake3.blake3()
    for piece in pack_entry(msgpack.Packer(use_bin_type=True), entry):
        digest.update(piece)
    return digest.digest()


class ManifestBuilder:
    """Entries in, a sealed manifest out; memory grows with the number of paths, not blocks.

    `base` is the version this one follows (what `latest` names), if any. When at most half
    the entries differ from it (new, changed or removed), the manifest is stored as a delta on
    it: unchanged files then cost nothing to a reader who holds the base, so a version that
    rewrites 2% of 200 files ships 2% of the block lists. A chain of MAX_DEPTH deltas is cut by
    a whole manifest.
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
        # (start, length) in the spool of each entry new or changed since the base.
        self._changed: list[tuple[int, int]] = []
        self._base: tuple[ManifestId, int] | None = None
        self._before: dict[str, bytes] = {}  # path -> fingerprint, of the base's entries
        if base is not None and base[1].depth + 1 <= MAX_DEPTH:
            self._base = (base[0], base[1].depth)
            self._before = {entry.path: entry_fingerprint(entry) for entry in base[1].files}

    def __enter__(self) -> ManifestBuilder:
        return self

    def __exit__(self, *_: object) -> None:
        self._spool.close()

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
        self._write(pack_entry(self._packer, entry, (block_count, counted())), entry)
        self._checker.add(entry, block_bytes=total)

    def _write(self, pieces: Iterable[bytes], entry: FileEntry) -> None:
        path = entry.path
        self._version = max(self._version, format_for(entry.chunking))
        start = self._spool.tell()
        digest = blake3.blake3()
        for piece in pieces:
            self._spool.write(piece)
            digest.update(piece)
        self._count += 1
        if self._base is not None and self._before.pop(path, None) != digest.digest():
            self._changed.append((start, self._spool.tell() - start))

    def seal(self, dataset_key: bytes, sink: Callable[[bytes], object]) -> ManifestId:
        """Check the version as a whole, then seal its document (a delta if that pays) into
        `sink`; returns the manifest id."""
        self._checker.finish()
        header = Manifest(self.dataset, time.time(), self.chunking, (), self.meta)
        spans = [(0, self._spool.tell())]
        if self._base is not None:
            removed = tuple(sorted(self._before))
            if len(self._changed) + len(removed) <= self._count // 2:
                base_id, depth = self._base
                header = replace(header, base=base_id, removed=removed, depth=depth + 1)
                spans = self._changed
        count = self._count if header.base is None else len(spans)
        pieces = document_pieces(header, count, self._read_spans(spans), self._version)
        return seal_pieces(pieces, self.dataset, dataset_key, sink)

    def _read_spans(self, spans: list[tuple[int, int]]) -> Iterator[bytes]:
        for start, length in spans:
            self._spool.seek(start)
            while length:
                piece = self._spool.read(min(length, READ_PIECE))
                if not piece:
                    raise OSError("manifest spool is shorter than what was written to it")
                length -= len(piece)
                yield piece
