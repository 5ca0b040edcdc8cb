"""A small BitTorrent metainfo writer (BEP 3, multi-file), with BEP 19 web seeds.

    data = make_torrent(tree, name="v1", piece_length=1 << 20, web_seeds=["http://s3/bucket/"])

The torrent has no tracker (`announce` is absent): the rollout benchmark's swarms find each other
by local peer discovery. A client joining a multi-file torrent's web seed `URL/` fetches
`URL/<name>/<path>`, so the files must sit under that key prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

Bencodable = int | bytes | str | list["Bencodable"] | dict[str, "Bencodable"]


def bencode(value: Bencodable) -> bytes:
    """BEP 3 bencoding; dictionary keys sorted as raw bytes."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    items = sorted((k.encode(), v) for k, v in value.items())
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"


@dataclass(frozen=True, slots=True)
class Torrent:
    metainfo: bytes  # the .torrent file
    info_hash: str  # hex SHA-1 of the bencoded info dictionary
    pieces: int
    total: int  # bytes of payload


def make_torrent(
    root: Path, name: str, piece_length: int, web_seeds: Sequence[str] = ()
) -> Torrent:
    """A multi-file torrent of every regular file under `root` (sorted by path)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    hashes: list[bytes] = []
    piece = hashlib.sha1()
    filled = 0
    entries: list[Bencodable] = []
    total = 0
    for path in files:
        size = path.stat().st_size
        total += size
        entries.append({"length": size, "path": list(path.relative_to(root).parts)})
        with path.open("rb") as f:
            while chunk := f.read(piece_length - filled):
                piece.update(chunk)
                filled += len(chunk)
                if filled == piece_length:
                    hashes.append(piece.digest())
                    piece, filled = hashlib.sha1(), 0
    if filled:
        hashes.append(piece.digest())
    info: dict[str, Bencodable] = {
        "files": entries,
        "name": name,
        "piece length": piece_length,
        "pieces": b"".join(hashes),
    }
    meta: dict[str, Bencodable] = {"created by": "aetherfs-benchmarks", "info": info}
    if web_seeds:
        meta["url-list"] = list(web_seeds)
    return Torrent(bencode(meta), hashlib.sha1(bencode(info)).hexdigest(), len(hashes), total)
