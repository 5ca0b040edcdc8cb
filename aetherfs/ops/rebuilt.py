"""Page-structured files rewritten from scratch: cut them by content, not by page.

An SQLite file is cut on its page boundaries (`core/chunking.py`) because an update rewrites
whole pages in place and every other page stays a block of its own. A producer that writes a
new file every version (rows inserted in key order) shifts every row after the first new one,
so no page survives: page blocks then buy nothing, cost 144 bytes of manifest per 4 KiB, and
compress worse than 64 KiB content-defined blocks (zstd sees 4 KiB at a time). Measured on the
`sqlite-rebuilt` pair (benchmarks/record_pairs.py, 58 MiB): 4 KiB pages stored 42.6 MiB,
64 KiB content-defined blocks 40.7 MiB, and no page of v2 was found in v1.

So before a push cuts a page-chunked file whose path the base version has, it samples pages
at the same positions in both (`SAMPLE_PAGES`, by BLAKE3 of the plaintext the base's block
records carry): if fewer than half are unchanged, the file was rebuilt, and it is cut with
the default chunking instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import blake3

from aetherfs.core.blocklist import as_block_list
from aetherfs.core.chunking import FIXED, HEADER_BYTES, ChunkParams, choose_params
from aetherfs.core.manifest import FILE, Manifest, chunking_of

SAMPLE_PAGES = 512  # pages compared per file: the first quarter in order, the rest spread out
REBUILT_BELOW = 0.5  # share of sampled pages unchanged under which a file counts as rebuilt


def sample_indices(pages: int, wanted: int = SAMPLE_PAGES) -> list[int]:
    """Page indices to compare: the first ones (the header's neighbours) and an even spread."""
    if pages <= wanted:
        return list(range(pages))
    head = wanted // 4
    rest = wanted - head
    step = (pages - head) / rest
    return list(range(head)) + [head + int(i * step) for i in range(rest)]


def rebuilt_files(root: Path, paths: Iterable[str], base: Manifest | None) -> frozenset[str]:
    """Those of `paths` (relative, regular files) that are page-chunked, whose path the base
    has cut the same way, and whose sampled pages mostly differ from the base's."""
    if base is None:
        return frozenset()
    entries = {e.path: e for e in base.files if e.kind == FILE}
    found = set()
    for path in paths:
        entry = entries.get(path)
        if entry is None:
            continue
        old = chunking_of(base, entry)
        if old.kind != FIXED:
            continue
        with (root / path).open("rb") as stream:
            header = stream.read(HEADER_BYTES)
            size = stream.seek(0, 2)
            params = choose_params(header, ChunkParams(), size)
            if params != old:
                continue  # not cut the same way as before: nothing to compare page for page
            blocks = as_block_list(entry.blocks)
            pages = min(len(blocks), -(-size // params.avg_size))
            indices = sample_indices(pages)
            same = 0
            for index in indices:
                stream.seek(index * params.avg_size)
                page = stream.read(params.avg_size)
                same += blake3.blake3(page).digest() == blocks[index].digest
        if indices and same < REBUILT_BELOW * len(indices):
            found.add(path)
    return frozenset(found)
