"""Offline block accounting: what a chunking choice costs on a version pair, without a store.

Every file of v1 and v2 is cut with a chunker (FastCDC with given sizes, or fixed-size blocks),
each chunk hashed with BLAKE3; a chunk of v2 whose digest v1 lacks must be uploaded by a push
of v2 and downloaded by a pull of v2 over v1. Its size on the store and the wire is computed
exactly as AetherFS seals a block: zstd (level 1) if that saves 5% or more, a one-byte flag,
and the 16-byte XChaCha20-Poly1305 tag (`stored_size`; the smoke test checks it against
`aetherfs.core.blocks.seal_block`).

Requests are modelled for two store layouts:
(i)  one object per block: a PUT per new block, a GET per block fetched;
(ii) blocks packed, in the order a push meets them, into objects of up to `pack_size` bytes;
     a push PUTs each new pack; a pull fetches the blocks it needs with ranged GETs, one per
     run of needed blocks in a pack, runs closer than `merge_gap` bytes merged into one
     (reading the gap too). The default gap is where the two prices meet: reading a gap of
     unwanted bytes costs more egress than a GET request once it exceeds about 4.7 KB.
Manifest and tag requests (a handful per operation, the same for every choice) are left out,
but not the manifest's size: it lists every block (id, key, plaintext digest, pack, sizes:
about `MANIFEST_BYTES_PER_BLOCK` in msgpack) and a pull fetches it whole, so small blocks make
it big.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import zstandard
from fastcdc.fastcdc_cy import fastcdc_cy

from benchmarks.datasets import iter_files
from benchmarks.pricing import AWS, Prices

KiB = 1024
MiB = 1024 * KiB

# msgpack of a block's entry in the manifest: id, key, plaintext digest, pack id (32 bytes
# each), plaintext size, stored size, offset in the pack.
MANIFEST_BYTES_PER_BLOCK = 152
_ZSTD_LEVEL = 1  # as aetherfs.core.blocks
_MIN_SAVING = 0.05
_FLAG = 1
_TAG = 16


def stored_size(plaintext: bytes | memoryview) -> int:
    """Bytes AetherFS stores and moves for this chunk (compressed if it pays, encrypted)."""
    compressed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(plaintext)
    body = len(compressed) if len(compressed) <= len(plaintext) * (1 - _MIN_SAVING) else None
    return _FLAG + (body if body is not None else len(plaintext)) + _TAG


@dataclass(frozen=True, slots=True)
class Chunker:
    """FastCDC (min/avg/max) when `fixed` is 0, else fixed-size blocks of `fixed` bytes."""

    name: str
    min_size: int = 0
    avg_size: int = 0
    max_size: int = 0
    fixed: int = 0

    @classmethod
    def cdc(cls, min_size: int, avg_size: int, max_size: int) -> Chunker:
        name = f"FastCDC {_k(min_size)}/{_k(avg_size)}/{_k(max_size)}"
        return cls(name, min_size, avg_size, max_size)

    @classmethod
    def fixed_size(cls, size: int, label: str = "fixed") -> Chunker:
        return cls(f"{label} {_k(size)}", fixed=size)

    def cuts(self, data: memoryview) -> Iterator[tuple[int, int]]:
        """(offset, length) of each chunk of `data`."""
        if self.fixed:
            for offset in range(0, len(data), self.fixed):
                yield offset, min(self.fixed, len(data) - offset)
            return
        for cut in fastcdc_cy(data, self.min_size, self.avg_size, self.max_size):
            yield cut.offset, cut.length


def _k(size: int) -> str:
    return f"{size // MiB}M" if size >= MiB and size % MiB == 0 else f"{size // KiB}K"


@dataclass(slots=True)
class Block:
    digest: bytes
    size: int
    stored: int


@dataclass(slots=True)
class Version:
    """The block sequence of one version, in push order (files sorted, chunks in order)."""

    blocks: list[Block] = field(default_factory=list)  # every occurrence, in order
    size: int = 0
    files: dict[str, bytes] = field(default_factory=dict)  # path -> hash of its block list
    file_blocks: dict[str, int] = field(default_factory=dict)  # path -> number of blocks

    def unique(self) -> dict[bytes, Block]:
        seen: dict[bytes, Block] = {}
        for b in self.blocks:
            seen.setdefault(b.digest, b)
        return seen


def _chunks(path: Path, chunker: Chunker) -> Iterator[memoryview]:
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            for offset, length in chunker.cuts(view):
                piece = view[offset : offset + length]
                yield piece
                piece.release()
        finally:
            view.release()


def scan(root: Path, chunker: Chunker, sizes: dict[bytes, int]) -> Version:
    """Chunk and hash every file under `root`; `sizes` caches stored sizes by digest."""
    version = Version()
    for path in iter_files(root):
        listing = blake3.blake3()
        count = 0
        for piece in _chunks(path, chunker):
            digest = blake3.blake3(piece).digest()
            stored = sizes.get(digest)
            if stored is None:
                stored = sizes[digest] = stored_size(piece)
            version.blocks.append(Block(digest, len(piece), stored))
            version.size += len(piece)
            listing.update(digest)
            count += 1
        rel = path.relative_to(root).as_posix()
        version.files[rel] = listing.digest()
        version.file_blocks[rel] = count
    return version


@dataclass(frozen=True, slots=True)
class Pack:
    blocks: tuple[Block, ...]


def pack(blocks: list[Block], pack_size: int) -> list[Pack]:
    """Pack blocks, in order, into objects of at most `pack_size` bytes (a bigger block alone)."""
    packs: list[Pack] = []
    current: list[Block] = []
    filled = 0
    for b in blocks:
        if current and filled + b.stored > pack_size:
            packs.append(Pack(tuple(current)))
            current, filled = [], 0
        current.append(b)
        filled += b.stored
    if current:
        packs.append(Pack(tuple(current)))
    return packs


def ranged_gets(packs: list[Pack], needed: set[bytes], merge_gap: int) -> tuple[int, int]:
    """(GET requests, bytes read) to fetch `needed` blocks from `packs` with merged ranges."""
    gets = 0
    read = 0
    for p in packs:
        run_end: int | None = None  # end offset of the current range
        run_start = 0
        offset = 0
        for b in p.blocks:
            if b.digest in needed:
                if run_end is not None and offset - run_end <= merge_gap:
                    run_end = offset + b.stored
                else:
                    if run_end is not None:
                        read += run_end - run_start
                    gets += 1
                    run_start, run_end = offset, offset + b.stored
            offset += b.stored
        if run_end is not None:
            read += run_end - run_start
    return gets, read


def break_even_gap(prices: Prices) -> int:
    """Bytes of egress that cost as much as one GET request."""
    return int(prices.get_per_1000 / 1000 / (prices.egress_per_gb / 1024**3))


@dataclass(frozen=True, slots=True)
class Delta:
    """What one chunking choice costs on one version pair."""

    chunker: str
    v2_bytes: int
    v2_blocks: int
    v2_unique_blocks: int
    new_blocks: int
    new_stored_bytes: int  # pushed, and pulled over v1
    changed_file_blocks: int  # blocks listed by the files whose block list changed
    # (i) one object per block
    push_puts_single: int
    pull_gets_single: int
    fresh_gets_single: int
    fresh_bytes_single: int
    # (ii) packed
    push_puts_packed: int
    pull_gets_packed: int
    pull_bytes_packed: int
    fresh_gets_packed: int
    fresh_bytes_packed: int

    @property
    def manifest_bytes(self) -> int:
        """Estimated size of v2's manifest, fetched whole by every pull."""
        return self.v2_blocks * MANIFEST_BYTES_PER_BLOCK

    @property
    def changed_manifest_bytes(self) -> int:
        """The manifest entries of changed files only: what a manifest shared per file between
        versions (unchanged files' block lists stored once, content-addressed) would move."""
        return self.changed_file_blocks * MANIFEST_BYTES_PER_BLOCK

    @property
    def mean_block(self) -> float:
        return self.v2_bytes / self.v2_blocks if self.v2_blocks else 0.0

    def push_cost(self, prices: Prices, packed: bool) -> float:
        return prices.cost(puts=self.push_puts_packed if packed else self.push_puts_single)

    def pull_cost(self, prices: Prices, packed: bool) -> float:
        """Fetching the blocks v1 lacks, and v2's manifest (one GET)."""
        if packed:
            gets, egress = self.pull_gets_packed, self.pull_bytes_packed
        else:
            gets, egress = self.pull_gets_single, self.new_stored_bytes
        return prices.cost(gets=gets + 1, egress=egress + self.manifest_bytes)


def delta(
    v1_root: Path,
    v2_root: Path,
    chunker: Chunker,
    pack_size: int = 16 * MiB,
    merge_gap: int | None = None,
) -> Delta:
    if merge_gap is None:
        merge_gap = break_even_gap(AWS)
    sizes: dict[bytes, int] = {}
    v1 = scan(v1_root, chunker, sizes)
    v2 = scan(v2_root, chunker, sizes)
    v1_unique = v1.unique()
    v2_unique = v2.unique()
    new = [b for d, b in v2_unique.items() if d not in v1_unique]
    new_bytes = sum(b.stored for b in new)
    needed_new = {b.digest for b in new}
    # Packs as two pushes lay them out: v1's blocks, then v2's new ones.
    v1_packs = pack(list(v1_unique.values()), pack_size)
    v2_packs = pack(new, pack_size)
    pull_gets, pull_read = ranged_gets(v2_packs, needed_new, merge_gap)
    fresh_gets, fresh_read = ranged_gets(v1_packs + v2_packs, set(v2_unique), merge_gap)
    return Delta(
        chunker=chunker.name,
        v2_bytes=v2.size,
        v2_blocks=len(v2.blocks),
        v2_unique_blocks=len(v2_unique),
        new_blocks=len(new),
        new_stored_bytes=new_bytes,
        changed_file_blocks=sum(
            n for p, n in v2.file_blocks.items() if v1.files.get(p) != v2.files[p]
        ),
        push_puts_single=len(new),
        pull_gets_single=len(new),
        fresh_gets_single=len(v2_unique),
        fresh_bytes_single=sum(b.stored for b in v2_unique.values()),
        push_puts_packed=len(v2_packs),
        pull_gets_packed=pull_gets,
        pull_bytes_packed=pull_read,
        fresh_gets_packed=fresh_gets,
        fresh_bytes_packed=fresh_read,
    )
