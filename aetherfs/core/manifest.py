"""Manifests: one immutable version of a dataset, msgpack, encrypted with the dataset key.

Stored bytes = MAGIC || a secretstream (`sealed_stream.py`) of the msgpack document, keyed by
the dataset key with the dataset name as associated data, so a manifest cannot be replayed
under another dataset. The manifest id is BLAKE3 of the stored bytes. Sealed piece by piece, a
manifest is never whole in memory on its way to the store, nor on its way back. Manifests
written before (MAGIC_ONE_SHOT: nonce || one XChaCha20-Poly1305 box) still open.
"""

from __future__ import annotations

import io
import itertools
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import blake3
import msgpack

from aetherfs.core import crypto
from aetherfs.core.blocklist import (
    RECORD_SIZE,
    RUN_RECORDS,
    BlockList,
    RecordSpool,
    apply_patch,
    as_block_list,
    pack_record,
)
from aetherfs.core.blocks import BlockRef
from aetherfs.core.chunking import RECORDS, ChunkParams
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.paths import check_link_target, check_relative_path
from aetherfs.core.sealed_stream import StreamSealer, open_stream_from
from aetherfs.errors import IntegrityError

# Of the document; the envelope is told by its magic. Version 2 may name record-aligned
# chunking (RECORDS); a manifest that does not is still written as version 1, so builds that
# read only version 1 read it. Those builds refuse version 2 with "upgrade aetherfs".
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAGIC = b"AFM2"  # sealed as a stream
MAGIC_ONE_SHOT = b"AFM1"  # sealed in one piece: still read, no longer written
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

FILE = "f"
SYMLINK = "l"
DIRECTORY = "d"


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    kind: str  # FILE, SYMLINK or DIRECTORY
    mode: int = 0o644  # permission bits only
    size: int = 0
    blocks: Sequence[BlockRef] = ()  # held as a compact BlockList, whatever is passed
    target: str = ""  # symlink target, relative
    chunking: ChunkParams | None = None  # how this file was cut, if not the manifest default
    # The zstd level its blocks were sealed at, if not DEFAULT_LEVEL: an agent holding the
    # plaintext seals them again to the producer's bytes (`agent/tree_blocks.py`). Readers
    # that do not know the key ignore it, so it needs no new document format.
    level: int | None = None
    # In a delta only: the blocks as edits of the same path's in the base (`apply_patch`), in
    # place of `blocks`; resolved by `apply_delta`.
    patch: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", as_block_list(self.blocks))

    @property
    def block_ids(self) -> tuple[BlockId, ...]:
        return tuple(ref.id for ref in self.blocks)


@dataclass(frozen=True, slots=True)
class Manifest:
    dataset: str
    created: float
    chunking: ChunkParams
    files: tuple[FileEntry, ...]
    meta: dict[str, str] = field(default_factory=dict)
    # A delta: `files` are only the entries added or changed since `base`, and `removed` the
    # paths gone. Readers resolve it against the base they (usually) already hold.
    base: ManifestId | None = None
    removed: tuple[str, ...] = ()
    depth: int = 0  # deltas between this and the nearest full manifest

    @property
    def is_delta(self) -> bool:
        return self.base is not None

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def iter_blocks(self) -> Iterator[BlockRef]:
        for entry in self.files:
            yield from entry.blocks

    def unique_blocks(self) -> dict[BlockId, BlockRef]:
        return {ref.id: ref for ref in self.iter_blocks()}

    def stored_size(self, exclude: set[BlockId] | None = None) -> int:
        """Bytes on the wire for the unique blocks, less those in `exclude`."""
        exclude = exclude or set()
        return sum(r.stored_size for r in self.unique_blocks().values() if r.id not in exclude)


MAX_DEPTH = 32  # a chain of deltas longer than this is cut by a full manifest


def apply_delta(base: Manifest, delta: Manifest) -> Manifest:
    """The full manifest a delta describes, validated as a whole."""
    entries = {entry.path: entry for entry in base.files}
    for path in delta.removed:
        entries.pop(path, None)
    for entry in delta.files:
        if entry.patch:
            entry = _patched(entries.get(entry.path), entry)
        entries[entry.path] = entry
    full = Manifest(
        delta.dataset,
        delta.created,
        delta.chunking,
        tuple(sorted(entries.values(), key=lambda e: e.path)),
        delta.meta,
        depth=delta.depth,
    )
    validate(full)
    return full


def _patched(base: FileEntry | None, entry: FileEntry) -> FileEntry:
    if base is None or base.kind != FILE:
        raise IntegrityError(f"delta patches {entry.path!r}, which its base has no file at")
    try:
        blocks = apply_patch(as_block_list(base.blocks), entry.patch)
    except ValueError as exc:
        raise IntegrityError(f"the block patch of {entry.path!r} does not fit: {exc}") from None
    return replace(entry, blocks=blocks, patch=b"")


def validate(manifest: Manifest) -> None:
    """Refuse anything that could write outside the dataset or be ambiguous.

    A delta is checked entry by entry here, and as a whole once applied to its base.
    """
    for path in manifest.removed:
        check_relative_path(path)
    if manifest.depth > MAX_DEPTH or (manifest.is_delta and manifest.depth < 1):
        raise IntegrityError(f"manifest of {manifest.dataset} has a bad delta depth")
    checker = EntryChecker(whole=not manifest.is_delta)
    for entry in manifest.files:
        checker.add(entry)
    checker.finish()


class EntryChecker:
    """`validate`, one entry at a time, for a manifest built as a stream.

    Memory grows with the number of paths, not of blocks. `whole` says the entries are a whole
    version (not a delta), so links and parents can be checked across them at the end.
    """

    def __init__(self, whole: bool = True) -> None:
        self.whole = whole
        self._kinds: dict[str, str] = {}
        self._links: list[tuple[str, str]] = []

    def add(self, entry: FileEntry, block_bytes: int | None = None) -> None:
        """Check one entry; `block_bytes`, the sum of a FILE's block sizes if its blocks are
        streamed (see `pack_entry`) rather than in `entry.blocks`."""
        check_relative_path(entry.path)
        if entry.path in self._kinds:
            raise IntegrityError(f"manifest names {entry.path!r} twice")
        self._kinds[entry.path] = entry.kind
        if entry.kind not in (FILE, SYMLINK, DIRECTORY):
            raise IntegrityError(f"manifest entry {entry.path!r} has unknown kind {entry.kind!r}")
        if entry.mode != stat.S_IMODE(entry.mode) or entry.mode & (stat.S_ISUID | stat.S_ISGID):
            raise IntegrityError(f"manifest entry {entry.path!r} has a bad mode {entry.mode:o}")
        if entry.kind == SYMLINK:
            check_link_target(entry.path, entry.target)
            self._links.append((entry.path, entry.target))
        if entry.patch:
            if self.whole or entry.kind != FILE or len(entry.blocks):
                raise IntegrityError(f"manifest entry {entry.path!r} has a misplaced block patch")
            return  # its sizes are checked once the patch is applied (`apply_delta`)
        if block_bytes is None:
            block_bytes = as_block_list(entry.blocks).total_size()
        if entry.kind == FILE and block_bytes != entry.size:
            raise IntegrityError(f"manifest entry {entry.path!r}: block sizes do not add up")

    def finish(self) -> None:
        if not self.whole:
            return
        kinds = self._kinds
        for path, target in self._links:
            _check_no_link_chain(path, target, kinds)
        for path in kinds:
            parent = path.rpartition("/")[0]
            while parent:
                if kinds.get(parent, DIRECTORY) != DIRECTORY:
                    raise IntegrityError(
                        f"manifest places {path!r} under a non-directory {parent!r}"
                    )
                parent = parent.rpartition("/")[0]


def _check_no_link_chain(path: str, target: str, kinds: dict[str, str]) -> None:
    """Refuse a link whose target walks through another link: `..` after a link escapes."""
    parts = path.split("/")[:-1]
    for step in target.split("/")[:-1]:
        if step == "..":
            parts.pop()
        elif step not in ("", "."):
            parts.append(step)
            if kinds.get("/".join(parts)) == SYMLINK:
                raise IntegrityError(f"symlink {path!r} resolves through another symlink")


def _pack_map(
    packer: msgpack.Packer, fields: dict[str, Any], streamed: str, items: Iterable[bytes]
) -> Iterator[bytes]:
    """`fields` as a msgpack map; the value of key `streamed` (its element count) is written as
    an array from `items`, its elements already packed, as they come: no list of them all."""
    yield packer.pack_map_header(len(fields))
    for key, value in fields.items():
        yield packer.pack(key)
        if key != streamed:
            yield packer.pack(value)
            continue
        yield packer.pack_array_header(value)
        yield from items


def pack_entry(
    packer: msgpack.Packer,
    entry: FileEntry,
    streamed: tuple[int, Iterable[BlockList]] | None = None,
) -> Iterator[bytes]:
    """One entry as a msgpack map; its blocks one at a time (a file may have 300,000).

    `streamed` is a file's block count and its blocks in runs, in place of `entry.blocks`: a
    push reads a large file's blocks from disk run by run instead of holding them all.
    """
    count, runs = (
        (len(entry.blocks), (as_block_list(entry.blocks),)) if streamed is None else streamed
    )
    wire: dict[str, Any] = {"p": entry.path, "k": entry.kind, "m": entry.mode}
    if entry.kind == FILE:
        wire["s"] = entry.size
        if entry.chunking is not None:
            wire["c"] = entry.chunking.as_list()
        if entry.level is not None:
            wire["z"] = entry.level
        if entry.patch:
            wire["x"] = entry.patch
            return _pack_map(packer, wire, "", ())
        wire["b"] = count  # packed one by one below
    elif entry.kind == SYMLINK:
        wire["t"] = entry.target
    refs = (packer.pack(_fields_to_wire(fields)) for run in runs for fields in run.wire_fields())
    return _pack_map(packer, wire, "b", refs)


def _read_entry(unpacker: msgpack.Unpacker, spool: RecordSpool | None) -> FileEntry:
    """One entry, its blocks read one at a time straight into compact records (into `spool`,
    a run at a time, if given).

    Unpacked whole, a file's block list would first be a Python list of 7-item lists (about
    450 bytes per block: 29 MB for one 4 GiB file) before any record was made.
    """
    wire: dict[str, Any] = {}
    blocks = BlockList()
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key == "b":
            blocks = _read_blocks(unpacker, spool)
        else:
            wire[str(key)] = unpacker.unpack()
    chunking = wire.get("c")
    return FileEntry(
        path=str(wire["p"]),
        kind=str(wire["k"]),
        mode=int(wire["m"]),
        size=int(wire.get("s", 0)),
        blocks=blocks,
        target=str(wire.get("t", "")),
        chunking=ChunkParams.from_list(chunking) if chunking else None,
        level=int(wire["z"]) if "z" in wire else None,
        patch=bytes(wire.get("x", b"")),
    )


def _read_blocks(unpacker: msgpack.Unpacker, spool: RecordSpool | None) -> BlockList:
    count = unpacker.read_array_header()
    run = bytearray()
    if spool is None:
        for _ in range(count):
            run += _record_from_wire(unpacker.unpack())
        return BlockList.from_records(bytes(run))
    start: int | None = None  # of this list's records, appended run by run, back to back
    length = 0
    for done in range(1, count + 1):
        run += _record_from_wire(unpacker.unpack())
        if len(run) >= RUN_RECORDS * RECORD_SIZE or done == count:
            at = spool.append(bytes(run))
            start = at if start is None else start
            length += len(run)
            run.clear()
    return BlockList.spooled(spool, start or 0, length)


def _fields_to_wire(fields: tuple[bytes, bytes, int, bytes, int, bytes | None, int]) -> list[Any]:
    if fields[5] is None:
        short = fields[0].hex()[:12]
        raise ValueError(f"block {short} has no pack: pack blocks before the manifest")
    return list(fields)


def _record_from_wire(item: list[Any]) -> bytes:
    block_id, key, size, digest, stored_size, pack, offset = item
    return pack_record(block_id, key, digest, pack, size, stored_size, offset)


def format_for(chunking: ChunkParams | None, patched: bool = False) -> int:
    """The oldest document format that can name this chunking (and a block patch)."""
    return 2 if patched or (chunking is not None and chunking.kind == RECORDS) else 1


def document_pieces(
    manifest: Manifest, file_count: int, packed_files: Iterable[bytes], version: int = 1
) -> Iterator[bytes]:
    """The msgpack document of `manifest`, with its `file_count` entries taken already packed
    from `packed_files` (see `pack_entry`), not from `manifest.files`: a push streams them from
    a spool file. `version`: the document format its entries need (`format_for`)."""
    version = max(version, format_for(manifest.chunking))
    fields: dict[str, Any] = {
        "v": version,  # first: a reader refuses a newer format before reading files
        "dataset": manifest.dataset,
        "created": manifest.created,
        "chunking": manifest.chunking.as_list(),
        "files": file_count,  # the entries are streamed in here
        "meta": manifest.meta,
    }
    if manifest.base is not None:
        fields["base"] = manifest.base.digest
        fields["removed"] = list(manifest.removed)
        fields["depth"] = manifest.depth
    return _pack_map(msgpack.Packer(use_bin_type=True), fields, "files", packed_files)


def encode_pieces(manifest: Manifest) -> Iterator[bytes]:
    """The msgpack document, packed entry by entry, in pieces.

    Packing the whole document at once would first build every block's wire list (about
    1.4 KB per block at the peak); entries are packed one at a time instead.
    """
    validate(manifest)
    packer = msgpack.Packer(use_bin_type=True)
    entries = itertools.chain.from_iterable(pack_entry(packer, e) for e in manifest.files)
    version = max((format_for(e.chunking, bool(e.patch)) for e in manifest.files), default=1)
    return document_pieces(manifest, len(manifest.files), entries, version)


def encode(manifest: Manifest) -> bytes:
    return b"".join(encode_pieces(manifest))


class _PieceReader:
    """A file-like `read(n)` over an iterator of byte strings, counting what it gave."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._piece = memoryview(b"")
        self.given = 0

    def read(self, size: int = -1) -> bytes:
        while not self._piece:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._piece = memoryview(piece)
        size = len(self._piece) if size < 0 else size
        out = bytes(self._piece[:size])
        self._piece = self._piece[len(out) :]
        self.given += len(out)
        return out


def _read_document(
    pieces: Iterator[bytes], spool: RecordSpool | None
) -> tuple[dict[str, Any], tuple[FileEntry, ...]]:
    """The top-level fields, and the entries converted one at a time as they are read.

    Streaming keeps the peak low: unpacking the whole document first would hold every
    block's raw fields and its BlockRef at once (twice the memory, per block). The document
    comes in pieces (as they are decrypted) and is never whole in memory.
    """
    reader = _PieceReader(pieces)
    unpacker = msgpack.Unpacker(
        reader, raw=False, strict_map_key=True, max_buffer_size=MAX_MANIFEST_BYTES
    )
    document: dict[str, Any] = {}
    files: list[FileEntry] = []
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key == "v":  # written first: a newer format is refused before its files are read
            document[key] = unpacker.unpack()
            _check_format(document[key])
        elif key == "files":
            for _ in range(unpacker.read_array_header()):
                files.append(_read_entry(unpacker, spool))
        else:
            document[str(key)] = unpacker.unpack()
    if reader.read(1) or unpacker.tell() != reader.given:
        raise ValueError("bytes after the end of the document")
    _check_format(document.get("v"))
    return document, tuple(files)


def _check_format(version: object) -> None:
    if version not in READABLE_VERSIONS:
        raise IntegrityError(
            f"manifest format {version!r} is not supported (this build reads "
            f"{FORMAT_VERSION}); upgrade aetherfs"
        )


def decode(raw: bytes) -> Manifest:
    return decode_pieces(iter((raw,)))


def decode_pieces(pieces: Iterator[bytes], spool: RecordSpool | None = None) -> Manifest:
    """A manifest from its document in pieces; block records go to `spool`, if given."""
    try:
        document, files = _read_document(pieces, spool)
        manifest = Manifest(
            dataset=str(document["dataset"]),
            created=float(document["created"]),
            chunking=ChunkParams.from_list(list(document["chunking"])),
            files=files,
            meta={str(k): str(v) for k, v in document.get("meta", {}).items()},
            base=ManifestId(bytes(document["base"])) if "base" in document else None,
            removed=tuple(str(p) for p in document.get("removed", [])),
            depth=int(document.get("depth", 0)),
        )
    except IntegrityError:
        raise
    except Exception as exc:  # any malformed structure is an integrity failure, not a crash
        raise IntegrityError(f"manifest is malformed: {exc}") from None
    validate(manifest)
    return manifest


def _aad(dataset: str) -> bytes:
    return b"aetherfs manifest v1\0" + dataset.encode()


def seal_pieces(
    pieces: Iterable[bytes], dataset: str, dataset_key: bytes, sink: Callable[[bytes], object]
) -> ManifestId:
    """Encrypt a document given in pieces; the stored bytes go to `sink` as they are made.

    Returns the manifest id (BLAKE3 of everything given to `sink`).
    """
    digest = blake3.blake3()

    def out(data: bytes) -> None:
        digest.update(data)
        sink(data)

    out(MAGIC)
    sealer = StreamSealer(dataset_key, _aad(dataset), out)
    for piece in pieces:
        sealer.write(piece)
    sealer.close()
    return ManifestId(digest.digest())


def seal_manifest(manifest: Manifest, dataset_key: bytes) -> tuple[ManifestId, bytes]:
    return seal_document(encode(manifest), manifest.dataset, dataset_key)


def seal_document(document: bytes, dataset: str, dataset_key: bytes) -> tuple[ManifestId, bytes]:
    """Encrypt a manifest already encoded (`encode`): its id and stored bytes."""
    stored: list[bytes] = []
    manifest_id = seal_pieces((document,), dataset, dataset_key, stored.append)
    return manifest_id, b"".join(stored)


def open_manifest(
    manifest_id: ManifestId,
    stored: bytes | BinaryIO,
    dataset: str,
    dataset_key: bytes,
    spool: RecordSpool | None = None,
) -> Manifest:
    """Verify the id, decrypt with the dataset key and validate every path.

    `stored` may be a file, read a piece at a time as it is decrypted and decoded: the id is
    checked once every byte is read, before anything is returned. With a `spool`, the block
    records are kept there, on disk, not in memory.
    """
    source = _CountedSource(
        manifest_id, io.BytesIO(stored) if isinstance(stored, bytes) else stored
    )
    altered = IntegrityError(f"manifest {manifest_id.short()} does not match its id: altered")
    magic = source.read(len(MAGIC))
    if magic not in (MAGIC, MAGIC_ONE_SHOT):
        if not source.matches():
            raise altered
        raise IntegrityError(f"manifest {manifest_id.short()} is not an AetherFS manifest")
    wrong_key = IntegrityError(
        f"cannot decrypt manifest {manifest_id.short()} of {dataset}: wrong key for this "
        "store (check --keys / AETHERFS_KEYS), or the manifest was altered"
    )
    if magic == MAGIC_ONE_SHOT:
        nonce = source.read(crypto.NONCE_SIZE)
        body = source.read(MAX_MANIFEST_BYTES)
        if not source.matches():
            raise altered
        try:
            raw = crypto.open_sealed(body, dataset_key, nonce, _aad(dataset))
        except IntegrityError:
            raise wrong_key from None
        del body
        manifest = decode_pieces(iter((raw,)), spool)
    else:
        pieces = open_stream_from(source.read, dataset_key, _aad(dataset))
        try:
            # The first piece is opened here, so a wrong key reads as one, not as a bad document.
            first = next(pieces)
        except IntegrityError:
            raise (wrong_key if source.matches() else altered) from None
        manifest = decode_pieces(_rest_as_altered(first, pieces, manifest_id), spool)
        if not source.matches():
            raise altered
    if manifest.dataset != dataset:
        raise IntegrityError(f"manifest {manifest_id.short()} belongs to {manifest.dataset}")
    return manifest


class _CountedSource:
    """Reads of a stored manifest, hashed (for its id) and bounded (MAX_MANIFEST_BYTES)."""

    def __init__(self, manifest_id: ManifestId, file: BinaryIO) -> None:
        self._id = manifest_id
        self._file = file
        self._digest = blake3.blake3()
        self._total = 0

    def read(self, size: int) -> bytes:
        data = self._file.read(size)
        self._total += len(data)
        if self._total > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"manifest {self._id.short()} is larger than any manifest")
        self._digest.update(data)
        return data

    def matches(self) -> bool:
        """Whether all the bytes (the rest read now) hash to the manifest id."""
        while self.read(1024 * 1024):
            pass
        return ManifestId(self._digest.digest()) == self._id


def _rest_as_altered(
    first: bytes, pieces: Iterator[bytes], manifest_id: ManifestId
) -> Iterator[bytes]:
    """The pieces of a stream whose first opened with the key: a later failure is an alteration."""
    yield first
    try:
        yield from pieces
    except IntegrityError as exc:
        raise IntegrityError(f"manifest {manifest_id.short()} was altered: {exc}") from None


def chunking_of(manifest: Manifest, entry: FileEntry) -> ChunkParams:
    return entry.chunking or manifest.chunking
