"""Version pairs where records change in place or a file is rebuilt, from a fixed seed.

Four pairs beside `benchmarks.datasets`' two, each written as `v1/` and `v2/` (sizes scale with
`total`, 256 MiB at full size; "changed" counts records, whatever the format does to its pages):

- `npy`: one float32 matrix (`embeddings.npy`, rows of 96 floats = 384 bytes). v2 rewrites 1%
  of the rows in place, at scattered positions (an embedding table after a partial refresh).
- `lmdb`: one LMDB environment (`data.mdb`, values of 100-500 bytes of text-like records).
  v2 updates 1% of the values and inserts 0.5% new keys, in one write transaction, on a copy
  of v1, as an application updating its database would.
- `sqlite-rebuilt`: one SQLite database that the producer writes from scratch every version,
  rows inserted in key order; v2 has 0.5% of the rows changed and 0.2% added (spread over the
  key range), so every page after the first new row holds shifted bytes.
- `parquet`: a directory of 20 Parquet partitions (pyarrow, its default snappy compression).
  v2 rewrites one partition (1% of its rows changed) and adds a 21st.

    python -m benchmarks.record_pairs npy DIR [--total-mib 256]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.datasets import EPOCH, MiB, PairPaths, describe, iter_files

ROW_FLOATS = 96  # 384-byte rows: "a few hundred bytes" per record
PARTITIONS = 20
# Text-like values: 16 symbols, about 4 bits of entropy per byte (zstd roughly halves them).
_SYMBOLS = np.frombuffer(b"abcdefghij ,.;:\n", dtype=np.uint8)


def _fresh(root: Path) -> PairPaths:
    paths = PairPaths(root / "v1", root / "v2")
    for d in (paths.v1, paths.v2):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    return paths


def _settle(paths: PairPaths) -> PairPaths:
    for d in (paths.v1, paths.v2):
        for f in iter_files(d):
            os.utime(f, (EPOCH, EPOCH))
    return paths


def make_npy_pair(root: Path, total: int = 256 * MiB, seed: int = 11) -> PairPaths:
    """A float32 matrix; v2 has 1% of its rows rewritten in place at random positions."""
    paths = _fresh(root)
    rows = max(100, total // (ROW_FLOATS * 4))
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((rows, ROW_FLOATS), dtype=np.float32)
    np.save(paths.v1 / "embeddings.npy", matrix)
    changed = rng.choice(rows, size=max(1, rows // 100), replace=False)
    matrix[changed] = rng.standard_normal((len(changed), ROW_FLOATS), dtype=np.float32)
    np.save(paths.v2 / "embeddings.npy", matrix)
    return _settle(paths)


def _text_values(rng: np.random.Generator, count: int) -> Iterator[bytes]:
    sizes = rng.integers(100, 501, size=count)
    pool = _SYMBOLS[rng.integers(0, 16, size=int(sizes.sum()))].tobytes()
    at = 0
    for size in sizes.tolist():
        yield pool[at : at + size]
        at += size


def make_lmdb_pair(root: Path, total: int = 256 * MiB, seed: int = 12) -> PairPaths:
    """An LMDB file; v2 updates 1% of the values and inserts 0.5% keys in one transaction."""
    import lmdb  # only the benchmarks need it

    paths = _fresh(root)
    # Keys 16 bytes, values 300 on average; pages about 70% full after random-order inserts.
    count = max(200, int(total * 0.7) // 330)
    rng = np.random.default_rng(seed)
    keys = [f"rec-{k:012d}".encode() for k in rng.permutation(count * 10)[:count].tolist()]

    def open_env(where: Path) -> lmdb.Environment:
        return lmdb.open(str(where), map_size=max(64 * MiB, total * 4), subdir=True, lock=False)

    env = open_env(paths.v1)
    with env.begin(write=True) as txn:
        for key, value in zip(keys, _text_values(rng, count), strict=True):
            txn.put(key, value)
    env.close()
    (paths.v1 / "lock.mdb").unlink(missing_ok=True)
    shutil.copyfile(paths.v1 / "data.mdb", paths.v2 / "data.mdb")
    env = open_env(paths.v2)
    updated = rng.choice(count, size=max(1, count // 100), replace=False)
    taken = set(keys)
    fresh: list[bytes] = []
    while len(fresh) < max(1, count // 200):
        key = f"rec-{int(rng.integers(0, count * 10)):012d}".encode()
        if key not in taken:
            taken.add(key)
            fresh.append(key)
    with env.begin(write=True) as txn:
        for index, value in zip(updated.tolist(), _text_values(rng, len(updated)), strict=True):
            txn.put(keys[index], value)
        for key, value in zip(fresh, _text_values(rng, len(fresh)), strict=True):
            txn.put(key, value)
    env.close()
    (paths.v2 / "lock.mdb").unlink(missing_ok=True)
    return _settle(paths)


def _place(rng: random.Random, key: int) -> tuple[int, str, str, float, float, int, int]:
    name = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(6, 14))).capitalize()
    return (
        key,
        f"{name}-{key}",
        rng.choice(["de", "fr", "us", "jp", "br", "in", "ng", "au", "ca", "se"]),
        round(rng.uniform(-90, 90), 6),
        round(rng.uniform(-180, 180), 6),
        rng.randint(0, 5_000_000),
        EPOCH,
    )


def _write_places(path: Path, rows: Iterator[tuple[int, str, str, float, float, int, int]]) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 4096")
    db.execute(
        "CREATE TABLE places (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, "
        "lat REAL, lon REAL, population INTEGER, updated INTEGER)"
    )
    db.executemany("INSERT INTO places VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def make_sqlite_rebuilt_pair(root: Path, total: int = 256 * MiB, seed: int = 13) -> PairPaths:
    """SQLite written from scratch each version in key order; v2: 0.5% changed, 0.2% added."""
    paths = _fresh(root)
    rows = max(1000, total // 64)  # about 64 bytes per row on disk with 4 KiB pages
    rng = random.Random(seed)
    table = [_place(rng, i * 10) for i in range(rows)]
    _write_places(paths.v1 / "places.sqlite", iter(table))
    rng = random.Random(seed + 1)
    for index in rng.sample(range(rows), max(1, rows // 200)):
        key, name, country, lat, lon, _, _ = table[index]
        table[index] = (key, name, country, lat, lon, rng.randint(0, 5_000_000), EPOCH + 86_400)
    added = [_place(rng, i * 10 + 5) for i in rng.sample(range(rows), max(1, rows // 500))]
    _write_places(paths.v2 / "places.sqlite", iter(sorted(table + added)))
    return _settle(paths)


def _partition(rng: np.random.Generator, rows: int, first_id: int) -> dict[str, np.ndarray]:
    return {
        "id": np.arange(first_id, first_id + rows, dtype=np.int64),
        "user": rng.integers(0, 1_000_000, size=rows, dtype=np.int64),
        "score": rng.standard_normal(rows).astype(np.float32),
        "amount": np.round(rng.exponential(50.0, size=rows), 2),
        "label": _SYMBOLS[rng.integers(0, 16, size=(rows, 12))].view("S12").ravel(),
    }


def make_parquet_pair(root: Path, total: int = 256 * MiB, seed: int = 14) -> PairPaths:
    """20 Parquet partitions; v2 rewrites one (1% of its rows changed) and adds one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = _fresh(root)
    rows = max(1000, total // PARTITIONS // 30)  # about 30 bytes per row once compressed
    rng = np.random.default_rng(seed)

    def write(columns: dict[str, np.ndarray], where: Path) -> None:
        where.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), where)

    parts: list[dict[str, np.ndarray]] = []
    for i in range(PARTITIONS):
        parts.append(_partition(rng, rows, i * rows))
        write(parts[-1], paths.v1 / f"part={i:02d}" / "data.parquet")
    rewritten = int(rng.integers(0, PARTITIONS))
    for i, columns in enumerate(parts):
        target = paths.v2 / f"part={i:02d}" / "data.parquet"
        if i != rewritten:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths.v1 / f"part={i:02d}" / "data.parquet", target)
            continue
        changed = rng.choice(rows, size=max(1, rows // 100), replace=False)
        columns["score"][changed] = rng.standard_normal(len(changed)).astype(np.float32)
        columns["amount"][changed] = np.round(rng.exponential(50.0, size=len(changed)), 2)
        write(columns, target)
    write(
        _partition(rng, rows, PARTITIONS * rows),
        paths.v2 / f"part={PARTITIONS:02d}" / "data.parquet",
    )
    return _settle(paths)


# Share of records a pair's v2 changes or adds (the goals apply below 5%); `sqlite` changes
# 1.1%, `files` rewrites 2% of its files and appends to a log.
RECORDS_CHANGED = {
    "npy": 0.01,
    "lmdb": 0.015,
    "sqlite-rebuilt": 0.007,
    "parquet": 1.01 / (PARTITIONS + 1),  # one partition added, 1% of another changed
    "sqlite": 0.011,
    "sqlite+index": 0.011,
    "files": 0.02,
}

MAKERS: dict[str, Callable[[Path, int], PairPaths]] = {
    "npy": make_npy_pair,
    "lmdb": make_lmdb_pair,
    "sqlite-rebuilt": make_sqlite_rebuilt_pair,
    "parquet": make_parquet_pair,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", choices=sorted(MAKERS))
    parser.add_argument("directory", type=Path, help="writes DIRECTORY/v1 and DIRECTORY/v2")
    parser.add_argument("--total-mib", type=int, default=256, help="size of v1")
    args = parser.parse_args()
    started = time.monotonic()
    paths = MAKERS[args.pair](args.directory, args.total_mib * MiB)
    print(describe(args.pair, paths, time.monotonic() - started))


if __name__ == "__main__":
    main()
