"""Deterministic version pairs that look like real datasets, for the side-by-side benchmarks.

Two pairs, each written as two directories `v1/` and `v2/`:

- `sqlite`: one SQLite database (`places.sqlite`, a table with an integer key; about 2 million
  rows at full size; optionally a secondary index on `name`). v2 is v1 with 1% new rows
  inserted in the middle of the key range and 0.1% of the rows updated in place, written by
  SQLite itself on a copy of v1 (no VACUUM), as a producer refreshing a database would.
- `files`: about 200 files (1 GiB at full size): half incompressible (like Parquet or
  images), half text-like (zstd halves them), plus an application log. v2 rewrites 2% of the
  files (a few edits each: bytes inserted, deleted or replaced at random places, which shifts
  everything after an insert or delete) and appends to the log.

Everything is derived from a seed, so two runs write the same bytes. Sizes scale by flags; the
smoke tests use tiny ones.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB

SQLITE_NAME = "places.sqlite"
LOG_PATH = "logs/app.log"
# A fixed modification time for generated files, so runs are repeatable; see `stamp_changed`.
EPOCH = 1_700_000_000

_SYLLABLES = [
    "ka", "lo", "mi", "ra", "ten", "vo", "sun", "bel", "dor", "an", "is", "ur", "gal", "fen",
    "ro", "sa", "ti", "nor", "wes", "ham", "ton", "ville", "berg", "port", "by", "stad",
]  # fmt: skip
_COUNTRIES = ["de", "fr", "us", "jp", "br", "in", "ng", "au", "ca", "se", "it", "mx", "za"]
# Text-like files use 16 symbols: about 4 bits of entropy per byte, so zstd roughly halves them.
_TEXT_TABLE = bytes((b"abcdefghij ,.;:\n"[i % 16]) for i in range(256))


@dataclass(frozen=True, slots=True)
class PairPaths:
    v1: Path
    v2: Path


def _name(rng: random.Random, i: int) -> str:
    parts = rng.choices(_SYLLABLES, k=rng.randint(2, 4))
    return "".join(parts).capitalize() + f"-{i}"


def _row(rng: random.Random, key: int, i: int) -> tuple[int, str, str, float, float, int, int]:
    return (
        key,
        _name(rng, i),
        rng.choice(_COUNTRIES),
        round(rng.uniform(-90, 90), 6),
        round(rng.uniform(-180, 180), 6),
        rng.randint(0, 5_000_000),
        EPOCH,
    )


def make_sqlite_pair(
    root: Path, rows: int = 2_000_000, index: bool = False, seed: int = 1
) -> PairPaths:
    """Write `root/v1/places.sqlite` and `root/v2/places.sqlite` (see the module docstring).

    With `index`, the table also has a secondary index on `name`: the new rows' names are
    random, so their index entries land on pages all over the index, not in one place.
    """
    paths = PairPaths(root / "v1", root / "v2")
    for d in (paths.v1, paths.v2):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    rng = random.Random(seed)
    v1 = paths.v1 / SQLITE_NAME
    db = sqlite3.connect(v1)
    db.execute("PRAGMA page_size = 4096")
    db.execute(
        "CREATE TABLE places (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, "
        "lat REAL, lon REAL, population INTEGER, updated INTEGER)"
    )
    if index:
        db.execute("CREATE INDEX places_name ON places(name)")
    # Keys are spaced by 10 so v2 can insert new keys between existing ones.
    db.executemany(
        "INSERT INTO places VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_row(rng, i * 10, i) for i in range(rows)),
    )
    db.commit()
    db.close()

    v2 = paths.v2 / SQLITE_NAME
    shutil.copyfile(v1, v2)
    rng = random.Random(seed + 1)
    db = sqlite3.connect(v2)
    inserted = max(1, rows // 100)
    middle = (rows // 2 - inserted // 2) * 10
    db.executemany(
        "INSERT INTO places VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_row(rng, middle + j * 10 + 5, rows + j) for j in range(inserted)),
    )
    updated = max(1, rows // 1000)
    db.executemany(
        "UPDATE places SET population = ?, updated = ? WHERE id = ?",
        (
            (rng.randint(0, 5_000_000), EPOCH + 86_400, key * 10)
            for key in sorted(rng.sample(range(rows), updated))
        ),
    )
    db.commit()
    db.close()
    for f in (v1, v2):
        os.utime(f, (EPOCH, EPOCH))
    return paths


def _sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """`count` file sizes summing to about `total`, log-normally spread (a few large files)."""
    weights = [rng.lognormvariate(0, 0.9) for _ in range(count)]
    scale = total / sum(weights)
    return [max(1, int(w * scale)) for w in weights]


def _content(rng: random.Random, size: int, text: bool) -> bytes:
    data = rng.randbytes(size)
    return data.translate(_TEXT_TABLE) if text else data


def _log_lines(rng: random.Random, start: int, size: int) -> bytes:
    lines: list[str] = []
    written = 0
    n = start
    while written < size:
        line = (
            f"2026-11-{1 + n // 86_400 % 28:02d}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:"
            f"{n % 60:02d}Z {rng.choice(['INFO', 'INFO', 'INFO', 'WARN', 'DEBUG'])} "
            f"req={rng.getrandbits(48):012x} path=/api/v1/{rng.choice(_SYLLABLES)}/"
            f"{rng.randint(1, 99_999)} status={rng.choice([200, 200, 200, 204, 404, 500])} "
            f"took={rng.randint(1, 2_000)}ms\n"
        )
        lines.append(line)
        written += len(line)
        n += 1
    return "".join(lines).encode()


def _edit(rng: random.Random, data: bytes, edits: int, text: bool) -> bytes:
    """Insert, delete or replace a few spans (100 B to 8 KiB) at random places."""
    out = bytearray(data)
    for _ in range(edits):
        at = rng.randrange(max(1, len(out)))
        span = rng.randint(100, 8 * 1024)
        kind = rng.choice(["insert", "delete", "replace"])
        new = _content(rng, span, text)
        if kind == "insert":
            out[at:at] = new
        elif kind == "delete":
            del out[at : at + span]
        else:
            out[at : at + span] = new
    return bytes(out)


def make_files_pair(
    root: Path,
    total: int = 1 * GiB,
    files: int = 200,
    rewrite_fraction: float = 0.02,
    edits_per_file: int = 4,
    log_append: int | None = None,
    seed: int = 2,
) -> PairPaths:
    """Write `root/v1/` and `root/v2/` trees of about `files` files and `total` bytes."""
    paths = PairPaths(root / "v1", root / "v2")
    for d in (paths.v1, paths.v2):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    rng = random.Random(seed)
    data_files = files - 1  # one of them is the log
    sizes = _sizes(rng, data_files, total)
    log_size = max(1024, total // files)
    names: list[str] = []
    for i, size in enumerate(sizes):
        text = i % 2 == 1
        name = (
            f"part-{i // 50:02d}/{'table' if text else 'blob'}-{i:04d}.{'csv' if text else 'bin'}"
        )
        names.append(name)
        target = paths.v1 / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_content(rng, size, text))
    log = paths.v1 / LOG_PATH
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(_log_lines(rng, 0, log_size))

    rng = random.Random(seed + 1)
    rewrite = set(rng.sample(range(data_files), max(1, round(files * rewrite_fraction))))
    for i, name in enumerate(names):
        source, target = paths.v1 / name, paths.v2 / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if i in rewrite:
            target.write_bytes(_edit(rng, source.read_bytes(), edits_per_file, i % 2 == 1))
        else:
            shutil.copyfile(source, target)
    (paths.v2 / LOG_PATH).parent.mkdir(parents=True, exist_ok=True)
    appended = _log_lines(rng, 10**6, log_append if log_append is not None else log_size // 8)
    (paths.v2 / LOG_PATH).write_bytes(log.read_bytes() + appended)
    for d in (paths.v1, paths.v2):
        for f in iter_files(d):
            os.utime(f, (EPOCH, EPOCH))
    return paths


def iter_files(root: Path) -> Iterator[Path]:
    """Regular files under `root`, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def tree_size(root: Path) -> int:
    return sum(f.stat().st_size for f in iter_files(root))


def changed_files(v1: Path, v2: Path) -> list[str]:
    """Paths (relative) of files in v2 that are new or differ from v1."""
    changed = []
    for f in iter_files(v2):
        rel = f.relative_to(v2)
        old = v1 / rel
        if not old.is_file() or old.stat().st_size != f.stat().st_size:
            changed.append(rel.as_posix())
            continue
        with f.open("rb") as a, old.open("rb") as b:
            while True:
                x, y = a.read(MiB), b.read(MiB)
                if x != y:
                    changed.append(rel.as_posix())
                    break
                if not x:
                    break
    return changed


def stamp_changed(v1: Path, v2: Path, when: float | None = None) -> list[str]:
    """Give v2's changed files a modification time of now (as a producer writing them would).

    The pair is generated before anything is uploaded, so without this a tool that syncs by
    modification time (s5cmd) would see its remote copies of v1 as newer than v2's files.
    """
    when = time.time() if when is None else when
    changed = changed_files(v1, v2)
    for rel in changed:
        os.utime(v2 / rel, (when, when))
    return changed


def describe(name: str, paths: PairPaths, seconds: float) -> str:
    return (
        f"{name}: v1 {tree_size(paths.v1) / MiB:.1f} MiB, v2 {tree_size(paths.v2) / MiB:.1f}"
        f" MiB, {len(changed_files(paths.v1, paths.v2))} files changed, in {seconds:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", choices=["sqlite", "files"])
    parser.add_argument("directory", type=Path, help="writes DIRECTORY/v1 and DIRECTORY/v2")
    parser.add_argument("--rows", type=int, default=2_000_000, help="sqlite: rows in v1")
    parser.add_argument("--index", action="store_true", help="sqlite: add an index on name")
    parser.add_argument("--total-mib", type=int, default=1024, help="files: total size of v1")
    parser.add_argument("--files", type=int, default=200, help="files: number of files")
    args = parser.parse_args()
    started = time.monotonic()
    if args.pair == "sqlite":
        paths = make_sqlite_pair(args.directory, rows=args.rows, index=args.index)
    else:
        paths = make_files_pair(args.directory, total=args.total_mib * MiB, files=args.files)
    print(describe(args.pair, paths, time.monotonic() - started))


if __name__ == "__main__":
    main()
