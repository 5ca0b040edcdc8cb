"""What both repositories do with bytes they fetched, wherever from: check each block against
its id, and open manifests (kept on local disk, resolved through their chain of deltas)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cachetools import LRUCache

from aetherfs.core.blocklist import as_block_list
from aetherfs.core.blocks import BlockRef, verify_block
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import MAX_DEPTH, Manifest, apply_delta, open_manifest
from aetherfs.core.packs import ReadRange, plan_reads
from aetherfs.core.tags import TagHistory, TagScan
from aetherfs.errors import IntegrityError, NotFound
from aetherfs.repository.spool import FileRecordSpool

_OPENED_MANIFESTS = 16  # resolved manifests kept in memory: a delta's base is often reused
# Stored manifests this large (about 7,000 blocks, 440 MiB of data at 64 KiB) or larger keep
# their block records on disk while open: held in memory, they would grow a pull with its data.
SPOOL_ABOVE = 1024 * 1024


def cut_verified(read: ReadRange, data: bytes) -> Iterator[tuple[BlockRef, bytes]]:
    """The blocks of one ranged read, each checked against its id."""
    if len(data) != read.length:
        raise IntegrityError(f"pack {read.pack.short()} is shorter than its manifest says")
    for ref, stored in read.cut(data):
        verify_block(ref.id, stored)
        yield ref, stored


def cut_views(read: ReadRange, data: bytes) -> Iterator[tuple[BlockRef, memoryview]]:
    """`cut_verified` without a copy of each block: views of `data`, which they keep alive."""
    if len(data) != read.length:
        raise IntegrityError(f"pack {read.pack.short()} is shorter than its manifest says")
    whole = memoryview(data)
    for ref in read.blocks:
        begin = ref.offset - read.start
        stored = whole[begin : begin + ref.stored_size]
        verify_block(ref.id, stored)
        yield ref, stored


def gather_blocks(
    range_bytes: Callable[[str, ReadRange], bytes],
    dataset: str,
    refs: Iterable[BlockRef],
) -> dict[BlockId, bytes | memoryview]:
    """The stored bytes of each block, verified, in as few ranged reads as pays.

    Each is a view of the ranged read it came in (`range_bytes` gives a read's bytes): a pull
    opens every block in place, so copying each out of its read (a pass over every byte
    under the GIL) would buy nothing.
    """
    found: dict[BlockId, bytes | memoryview] = {}
    for read in plan_reads(refs):
        found.update(
            (ref.id, stored) for ref, stored in cut_views(read, range_bytes(dataset, read))
        )
    return found


class ManifestReader:
    """Opens the manifests `fetch` returns (sealed bytes of one dataset's manifest).

    Sealed manifests are kept in `manifest_cache` on local disk (verified by id on read): a
    reader holding v1 then fetches only v2's delta, not every block list again. Safe to share
    between threads.
    """

    def __init__(
        self,
        fetch: Callable[[str, ManifestId], bytes],
        dataset_key: Callable[[str], bytes],
        manifest_cache: Path | None = None,
        spool_above: int = SPOOL_ABOVE,
    ) -> None:
        self.fetch = fetch
        self.dataset_key = dataset_key
        self.manifest_cache = manifest_cache
        self.spool_above = spool_above  # stored manifest bytes from which records go to disk
        self._opened: LRUCache[ManifestId, Manifest] = LRUCache(_OPENED_MANIFESTS)
        self._opened_lock = threading.Lock()

    def keep_local(self, manifest_id: ManifestId, stored: bytes | BinaryIO) -> None:
        if self.manifest_cache is None:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
            self.manifest_cache.mkdir(parents=True, exist_ok=True)
            tmp = self.manifest_cache / f".{manifest_id.hex()}.{threading.get_ident()}"
            with tmp.open("wb") as out:
                if isinstance(stored, bytes):
                    out.write(stored)
                else:
                    shutil.copyfileobj(stored, out)
                out.flush()
                os.fsync(out.fileno())  # the agent serves these to peers after a crash too
            tmp.replace(self.manifest_cache / manifest_id.hex())

    def open_stored(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        """One stored manifest as it is: a delta stays a delta.

        Opened from the local copy when there is one (read a piece at a time, never whole),
        else fetched and kept. A large one keeps its block records in a spool file, not in
        memory (`spool.py`).
        """
        key = self.dataset_key(dataset)
        local = self._local_manifest(manifest_id)
        if local is not None:
            with local:
                spool = self._spool_for(os.fstat(local.fileno()).st_size)
                with contextlib.suppress(IntegrityError):  # a damaged copy: fetch it again
                    return open_manifest(manifest_id, local, dataset, key, spool)
        stored = self.fetch(dataset, manifest_id)
        self.keep_local(manifest_id, stored)
        spool = self._spool_for(len(stored))
        local = self._local_manifest(manifest_id)
        if local is None:
            return open_manifest(manifest_id, stored, dataset, key, spool)
        del stored  # read back from the local copy: not held whole while it is decoded
        with local:
            return open_manifest(manifest_id, local, dataset, key, spool)

    def _local_manifest(self, manifest_id: ManifestId) -> BinaryIO | None:
        if self.manifest_cache is None:
            return None
        try:
            return (self.manifest_cache / manifest_id.hex()).open("rb")
        except OSError:
            return None

    def _spool_for(self, stored_size: int) -> FileRecordSpool | None:
        return self._record_spool() if stored_size >= self.spool_above else None

    def _record_spool(self) -> FileRecordSpool:
        """A spool beside the manifest cache (on disk; the temp directory may be in memory)."""
        if self.manifest_cache is not None:
            with contextlib.suppress(OSError):
                self.manifest_cache.mkdir(parents=True, exist_ok=True)
                return FileRecordSpool(self.manifest_cache)
        return FileRecordSpool()

    def get(self, dataset: str, manifest_id: ManifestId) -> Manifest:
        """The whole version: a delta is resolved against its chain of bases."""
        with self._opened_lock:
            if manifest_id in self._opened:
                opened = self._opened[manifest_id]  # a read marks it recently used
                if opened.dataset == dataset:
                    return opened
        chain = [self.open_stored(dataset, manifest_id)]
        while chain[-1].base is not None:
            if len(chain) > MAX_DEPTH + 1:
                raise IntegrityError(f"manifest {manifest_id.short()} has too long a chain")
            chain.append(self.open_stored(dataset, chain[-1].base))
        manifest = chain.pop()
        while chain:
            manifest = apply_delta(manifest, chain.pop())
        with self._opened_lock:
            self._opened[manifest_id] = manifest
        return manifest


def known_blocks(
    list_tags: Callable[[str], dict[str, TagHistory]],
    get_manifest: Callable[[str, ManifestId], Manifest],
    dataset: str,
) -> Iterator[bytes]:
    """The located records (see BlockList) of every block of every version a tag of
    `dataset` names: blocks already on the store. A block may come more than once."""
    manifests = {h.current.record.manifest_id for h in list_tags(dataset).values()}
    for manifest_id in manifests:
        for entry in get_manifest(dataset, manifest_id).files:
            yield from as_block_list(entry.blocks).iter_records()


def scan_histories(
    tag_history: Callable[[str, str], TagHistory],
    dataset: str,
    tags: Iterable[str],
    damaged: dict[str, str] | None = None,
) -> TagScan:
    """Read each tag's history, setting aside (with why) each one that does not verify;
    `damaged`: tags already known to be, with why."""
    scan = TagScan({}, dict(damaged or {}))
    for tag in tags:
        try:
            scan.histories[tag] = tag_history(dataset, tag)
        except IntegrityError as exc:
            scan.damaged[tag] = str(exc)
        except NotFound:
            pass  # removed since it was listed
    return scan


def every_history(scan: TagScan) -> dict[str, TagHistory]:
    """All of a dataset's histories, or IntegrityError naming a damaged one: what gc and
    push need, since a tag they cannot read may name versions they must keep."""
    for why in scan.damaged.values():
        raise IntegrityError(why)
    return scan.histories
