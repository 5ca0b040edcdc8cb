"""Manifests: one immutable version of a dataset, msgpack, encrypted with the dataset key.

Stored bytes = MAGIC || nonce || XChaCha20-Poly1305(dataset key, nonce, msgpack, aad=dataset);
the manifest id is BLAKE3 of those bytes. The dataset name is bound as associated data, so a
manifest cannot be replayed under another dataset.
"""

from __future__ import annotations

import io
import itertools
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from aetherfs.core import crypto
from aetherfs.core.blocklist import BlockList, as_block_list, pack_record
from aetherfs.core.blocks import BlockRef
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.paths import check_link_target, check_relative_path
from aetherfs.errors import IntegrityError

FORMAT_VERSION = 1
MAGIC = b"AFM1"
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
    entries.update((entry.path, entry) for entry in delta.files)
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


def make_delta(base_id: ManifestId, base: Manifest, full: Manifest) -> Manifest:
    """`full` as a delta on `base` when that is much smaller, else `full` itself.

    Unchanged files then cost nothing to a reader who holds the base: a version that rewrites
    2% of 200 files ships 2% of the block lists, not all of them.
    """
    before = {entry.path: entry for entry in base.files}
    now = {entry.path for entry in full.files}
    changed = tuple(e for e in full.files if before.get(e.path) != e)
    removed = tuple(sorted(path for path in before if path not in now))
    if base.depth + 1 > MAX_DEPTH or len(changed) + len(removed) > len(full.files) // 2:
        return full
    return Manifest(
        full.dataset,
        full.created,
        full.chunking,
        changed,
        full.meta,
        base=base_id,
        removed=removed,
        depth=base.depth + 1,
    )


def validate(manifest: Manifest) -> None:
    """Refuse anything that could write outside the dataset or be ambiguous.

    A delta is checked entry by entry here, and as a whole once applied to its base.
    """
    for path in manifest.removed:
        check_relative_path(path)
    if manifest.depth > MAX_DEPTH or (manifest.is_delta and manifest.depth < 1):
        raise IntegrityError(f"manifest of {manifest.dataset} has a bad delta depth")
    kinds: dict[str, str] = {}
    for entry in manifest.files:
        check_relative_path(entry.path)
        if entry.path in kinds:
            raise IntegrityError(f"manifest names {entry.path!r} twice")
        kinds[entry.path] = entry.kind
        if entry.kind not in (FILE, SYMLINK, DIRECTORY):
            raise IntegrityError(f"manifest entry {entry.path!r} has unknown kind {entry.kind!r}")
        if entry.mode != stat.S_IMODE(entry.mode) or entry.mode & (stat.S_ISUID | stat.S_ISGID):
            raise IntegrityError(f"manifest entry {entry.path!r} has a bad mode {entry.mode:o}")
        if entry.kind == SYMLINK:
            check_link_target(entry.path, entry.target)
        if entry.kind == FILE and as_block_list(entry.blocks).total_size() != entry.size:
            raise IntegrityError(f"manifest entry {entry.path!r}: block sizes do not add up")
    if manifest.is_delta:
        return
    for entry in manifest.files:
        if entry.kind == SYMLINK:
            _check_no_link_chain(entry.path, entry.target, kinds)
    for path in kinds:
        parent = path.rpartition("/")[0]
        while parent:
            if kinds.get(parent, DIRECTORY) != DIRECTORY:
                raise IntegrityError(f"manifest places {path!r} under a non-directory {parent!r}")
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
    """`fields` as a msgpack map; the value of key `streamed` (a sequence) is written as an
    array from `items`, its elements already packed, as they come: no list of them all."""
    yield packer.pack_map_header(len(fields))
    for key, value in fields.items():
        yield packer.pack(key)
        if key != streamed:
            yield packer.pack(value)
            continue
        yield packer.pack_array_header(len(value))
        yield from items


def _pack_entry(packer: msgpack.Packer, entry: FileEntry) -> Iterator[bytes]:
    """One entry as a msgpack map; its blocks one at a time (a file may have 300,000)."""
    wire: dict[str, Any] = {"p": entry.path, "k": entry.kind, "m": entry.mode}
    if entry.kind == FILE:
        wire["s"] = entry.size
        wire["b"] = entry.blocks  # packed one by one below
        if entry.chunking is not None:
            wire["c"] = entry.chunking.as_list()
    elif entry.kind == SYMLINK:
        wire["t"] = entry.target
    refs = (packer.pack(_fields_to_wire(f)) for f in as_block_list(entry.blocks).wire_fields())
    return _pack_map(packer, wire, "b", refs)


def _entry_from_wire(wire: dict[str, Any]) -> FileEntry:
    # Straight from the wire to compact records: no BlockRef objects on the way.
    blocks = BlockList.from_records(b"".join(_record_from_wire(item) for item in wire.get("b", [])))
    chunking = wire.get("c")
    return FileEntry(
        path=str(wire["p"]),
        kind=str(wire["k"]),
        mode=int(wire["m"]),
        size=int(wire.get("s", 0)),
        blocks=blocks,
        target=str(wire.get("t", "")),
        chunking=ChunkParams.from_list(chunking) if chunking else None,
    )


def _fields_to_wire(fields: tuple[bytes, bytes, int, bytes, int, bytes | None, int]) -> list[Any]:
    if fields[5] is None:
        short = fields[0].hex()[:12]
        raise ValueError(f"block {short} has no pack: pack blocks before the manifest")
    return list(fields)


def _record_from_wire(item: list[Any]) -> bytes:
    block_id, key, size, digest, stored_size, pack, offset = item
    return pack_record(block_id, key, digest, pack, size, stored_size, offset)


def encode(manifest: Manifest) -> bytes:
    """The msgpack document, packed entry by entry.

    Packing the whole document at once would first build every block's wire list (about
    1.4 KB per block at the peak); entries are packed one at a time instead.
    """
    validate(manifest)
    fields: dict[str, Any] = {
        "v": FORMAT_VERSION,  # first: a reader refuses a newer format before reading files
        "dataset": manifest.dataset,
        "created": manifest.created,
        "chunking": manifest.chunking.as_list(),
        "files": manifest.files,  # packed entry by entry below
        "meta": manifest.meta,
    }
    if manifest.base is not None:
        fields["base"] = manifest.base.digest
        fields["removed"] = list(manifest.removed)
        fields["depth"] = manifest.depth
    packer = msgpack.Packer(use_bin_type=True)
    out = io.BytesIO()
    entries = itertools.chain.from_iterable(_pack_entry(packer, e) for e in manifest.files)
    for piece in _pack_map(packer, fields, "files", entries):
        out.write(piece)
    return out.getvalue()


def _read_document(raw: bytes) -> tuple[dict[str, Any], tuple[FileEntry, ...]]:
    """The top-level fields, and the entries converted one at a time as they are read.

    Streaming keeps the peak low: unpacking the whole document first would hold every
    block's raw fields and its BlockRef at once (twice the memory, per block).
    """
    # Read through a BytesIO (which shares `raw`), not feed(): no second copy of the document.
    unpacker = msgpack.Unpacker(
        io.BytesIO(raw), raw=False, strict_map_key=True, max_buffer_size=len(raw) + 1
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
                files.append(_entry_from_wire(unpacker.unpack()))
        else:
            document[str(key)] = unpacker.unpack()
    if unpacker.tell() != len(raw):
        raise ValueError("bytes after the end of the document")
    _check_format(document.get("v"))
    return document, tuple(files)


def _check_format(version: object) -> None:
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"manifest format {version!r} is not supported (this build reads "
            f"{FORMAT_VERSION}); upgrade aetherfs"
        )


def decode(raw: bytes) -> Manifest:
    try:
        document, files = _read_document(raw)
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


def seal_manifest(manifest: Manifest, dataset_key: bytes) -> tuple[ManifestId, bytes]:
    return seal_document(encode(manifest), manifest.dataset, dataset_key)


def seal_document(document: bytes, dataset: str, dataset_key: bytes) -> tuple[ManifestId, bytes]:
    """Encrypt a manifest already encoded (`encode`): its id and stored bytes."""
    nonce = crypto.random_nonce()
    stored = MAGIC + nonce + crypto.seal(document, dataset_key, nonce, _aad(dataset))
    return ManifestId.of(stored), stored


def open_manifest(
    manifest_id: ManifestId, stored: bytes, dataset: str, dataset_key: bytes
) -> Manifest:
    """Verify the id, decrypt with the dataset key and validate every path."""
    if ManifestId.of(stored) != manifest_id:
        raise IntegrityError(f"manifest {manifest_id.short()} does not match its id: altered")
    if len(stored) > MAX_MANIFEST_BYTES or not stored.startswith(MAGIC):
        raise IntegrityError(f"manifest {manifest_id.short()} is not an AetherFS manifest")
    nonce = stored[len(MAGIC) : len(MAGIC) + crypto.NONCE_SIZE]
    body = stored[len(MAGIC) + crypto.NONCE_SIZE :]
    try:
        raw = crypto.open_sealed(body, dataset_key, nonce, _aad(dataset))
    except IntegrityError:
        raise IntegrityError(
            f"cannot decrypt manifest {manifest_id.short()} of {dataset}: wrong key for this "
            "store (check --keys / AETHERFS_KEYS), or the manifest was altered"
        ) from None
    manifest = decode(raw)
    if manifest.dataset != dataset:
        raise IntegrityError(f"manifest {manifest_id.short()} belongs to {manifest.dataset}")
    return manifest


def chunking_of(manifest: Manifest, entry: FileEntry) -> ChunkParams:
    return entry.chunking or manifest.chunking
