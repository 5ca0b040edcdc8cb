"""Write a small sample dataset (SQLite and CSV); version 2 adds 1% rows and corrects a few."""

from __future__ import annotations

import argparse
import random
import sqlite3
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--version", type=int, choices=[1, 2], default=1)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(args.directory / "places.sqlite")
    rng = random.Random(7)
    if args.version == 1:
        db.execute("DROP TABLE IF EXISTS places")
        db.execute("CREATE TABLE places (id INTEGER PRIMARY KEY, name TEXT, lat REAL, lon REAL)")
        db.executemany(
            "INSERT INTO places VALUES (?, ?, ?, ?)",
            (
                (i * 10, f"place-{i}", rng.uniform(-90, 90), rng.uniform(-180, 180))
                for i in range(args.rows)
            ),
        )
    else:
        # A typical refresh: new rows at the end of the key range, a handful corrected.
        db.executemany(
            "INSERT INTO places VALUES (?, ?, ?, ?)",
            (
                (i * 10, f"place-{i}", rng.uniform(-90, 90), rng.uniform(-180, 180))
                for i in range(args.rows, args.rows + args.rows // 100)
            ),
        )
        for i in rng.sample(range(args.rows), 5):
            db.execute("UPDATE places SET name = ? WHERE id = ?", (f"renamed-{i}", i * 10))
    db.commit()
    db.close()
    with (args.directory / "regions.csv").open("a" if args.version == 2 else "w") as f:
        for i in range(1000 if args.version == 1 else 10):
            f.write(f"{i},region-{i},{rng.random():.6f}\n")
    print(f"sample dataset version {args.version} written to {args.directory}")


if __name__ == "__main__":
    main()
