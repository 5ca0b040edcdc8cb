"""Sweep chunking choices on the version pairs: bytes moved per delta against requests and price.

For each pair and each chunker (FastCDC around 16K/64K/256K, 64K/256K/1M, 256K/1M/4M; fixed
page-aligned blocks of 4K/16K/64K for SQLite), reports the bytes a push of v2 uploads and a pull
of v2 over v1 downloads, the number of blocks, and the requests and their AWS price when blocks
are (i) one object each, (ii) packed into 16 MiB objects fetched with merged ranged GETs. See
`benchmarks.blocks` for the model. Writes `results/chunk_sweep.{md,json}`.

    python -m benchmarks.chunk_sweep --work benchmarks/.work
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.blocks import Chunker, Delta, break_even_gap, delta
from benchmarks.datasets import MiB, changed_files, make_files_pair, make_sqlite_pair, tree_size
from benchmarks.harness import machine
from benchmarks.pricing import AWS, dollars
from benchmarks.record_pairs import MAKERS

KiB = 1024

CDC = [
    Chunker.cdc(4 * KiB, 16 * KiB, 64 * KiB),
    Chunker.cdc(16 * KiB, 64 * KiB, 256 * KiB),
    Chunker.cdc(64 * KiB, 256 * KiB, 1 * MiB),
    Chunker.cdc(256 * KiB, 1 * MiB, 4 * MiB),
]
PAGES = [Chunker.fixed_size(s, "SQLite pages") for s in (4 * KiB, 16 * KiB, 64 * KiB)]
PACK = 16 * MiB


def ensure_pairs(
    work: Path,
    rows: int,
    total_mib: int,
    files: int,
    index: bool,
    record_mib: int = 0,
    only: frozenset[str] | None = None,
) -> dict[str, Path]:
    """Generate the pairs under `work` unless they are already there (generation is seeded).

    `record_mib` > 0 adds the pairs of `benchmarks.record_pairs` at that size; `only` keeps
    just the pairs it names.
    """
    pairs = {"sqlite": work / "sqlite", "files": work / "files"}
    if index:
        pairs["sqlite+index"] = work / "sqlite-index"
    if record_mib:
        pairs |= {name: work / name for name in MAKERS}
    if only is not None:
        pairs = {name: root for name, root in pairs.items() if name in only}
    for name, root in pairs.items():
        stamp: dict[str, int] = (
            {"record_mib": record_mib}
            if name in MAKERS
            else {"rows": rows, "total_mib": total_mib, "files": files}
        )
        marker = root / "params.json"
        if marker.exists() and json.loads(marker.read_text()) == stamp:
            continue
        if name == "files":
            make_files_pair(root, total=total_mib * MiB, files=files)
        elif name in MAKERS:
            MAKERS[name](root, record_mib * MiB)
        else:
            make_sqlite_pair(root, rows=rows, index=name == "sqlite+index")
        marker.write_text(json.dumps(stamp))
    return pairs


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that size and select the pairs, shared by the sweep and the comparison."""
    parser.add_argument("--rows", type=int, default=2_000_000, help="sqlite pairs: rows in v1")
    parser.add_argument("--total-mib", type=int, default=1024, help="files pair: size of v1")
    parser.add_argument("--files", type=int, default=200, help="files pair: number of files")
    parser.add_argument(
        "--record-mib",
        type=int,
        default=256,
        help="size of v1 of each record pair (npy, lmdb, sqlite-rebuilt, parquet); 0 skips them",
    )
    parser.add_argument("--pairs", help="comma-separated subset of the pairs to run")


def pairs_from(args: argparse.Namespace, index: bool) -> dict[str, Path]:
    only = frozenset(args.pairs.split(",")) if args.pairs else None
    return ensure_pairs(
        args.work, args.rows, args.total_mib, args.files, index, args.record_mib, only
    )


def _mib(n: float) -> str:
    return f"{n / MiB:,.2f} MiB"


def table(results: list[Delta], whole_file: int) -> str:
    head = (
        "| chunking | blocks in v2 (mean) | new blocks | bytes moved (push = pull over v1) "
        "| whole changed files / this | v2 manifest (est.; changed files only) | (i) push PUTs / $ "
        "| (i) pull GETs / $ | (ii) push PUTs / $ | (ii) pull GETs / $ "
        "| fresh pull GETs (i) / (ii) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for d in results:
        rows.append(
            f"| {d.chunker} | {d.v2_blocks:,} ({d.mean_block / KiB:,.0f} KiB) | {d.new_blocks:,} "
            f"| {_mib(d.new_stored_bytes)} | {whole_file / max(1, d.new_stored_bytes):.1f}x "
            f"| {_mib(d.manifest_bytes)}; {_mib(d.changed_manifest_bytes)} "
            f"| {d.push_puts_single:,} / {dollars(d.push_cost(AWS, False))} "
            f"| {d.pull_gets_single:,} / {dollars(d.pull_cost(AWS, False))} "
            f"| {d.push_puts_packed:,} / {dollars(d.push_cost(AWS, True))} "
            f"| {d.pull_gets_packed:,} / {dollars(d.pull_cost(AWS, True))} "
            f"| {d.fresh_gets_single:,} / {d.fresh_gets_packed:,} |"
        )
    return head + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_pair_arguments(parser)
    parser.add_argument(
        "--no-index", action="store_true", help="skip the SQLite pair with a secondary index"
    )
    args = parser.parse_args()
    started = time.monotonic()
    pairs = pairs_from(args, not args.no_index)
    gap = break_even_gap(AWS)
    report: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "pack_size": PACK,
        "merge_gap": gap,
        "pairs": {},
    }
    lines = [
        "# Chunk sweep",
        "",
        f"Generated by `python -m benchmarks.chunk_sweep` on {report['date']} "
        f"({report['machine']}).",
        "Sizes are stored bytes (zstd where it pays, plus the 17-byte encryption overhead). "
        "Prices: AWS S3 list (PUT $0.005/1000, GET $0.0004/1000, egress $0.09/GB). "
        "(i) one object per block; (ii) blocks packed into 16 MiB objects, read with ranged GETs "
        f"merged across gaps up to {gap:,} bytes (where a GET costs as much as the gap's egress). "
        "Manifest and tag requests are left out (a few per operation for every choice). "
        "'fresh pull' is a pull of v2 by a host that holds nothing. The v2 manifest (estimated "
        "at 152 bytes per block: id, key, digest, pack, sizes) is fetched whole by every pull, "
        "on top of the bytes moved; pull prices include it. The second manifest figure counts "
        "only the entries of files whose block list changed: what a pull would fetch if block "
        "lists were stored per file, content-addressed, and shared between versions.",
        "",
    ]
    summary: list[str] = []
    for name, root in pairs.items():
        chunkers = CDC + (PAGES if name.startswith("sqlite") else [])
        whole = sum(
            (root / "v2" / p).stat().st_size for p in changed_files(root / "v1", root / "v2")
        )
        results = []
        for chunker in chunkers:
            t = time.monotonic()
            d = delta(root / "v1", root / "v2", chunker, pack_size=PACK, merge_gap=gap)
            print(
                f"{name}: {chunker.name}: {_mib(d.new_stored_bytes)} ({time.monotonic() - t:.1f} s)"
            )
            results.append(d)
        report["pairs"][name] = {  # type: ignore[index]
            "v1_bytes": tree_size(root / "v1"),
            "v2_bytes": tree_size(root / "v2"),
            "changed_files_bytes": whole,
            "results": [
                asdict(d)
                | {
                    "manifest_bytes": d.manifest_bytes,
                    "changed_manifest_bytes": d.changed_manifest_bytes,
                }
                for d in results
            ],
        }
        fewest = min(results, key=lambda d: d.new_stored_bytes)
        with_manifest = min(results, key=lambda d: d.new_stored_bytes + d.manifest_bytes)
        pulled = with_manifest.new_stored_bytes + with_manifest.manifest_bytes
        cheapest = min(results, key=lambda d: d.push_cost(AWS, True) + d.pull_cost(AWS, True))
        single = min(results, key=lambda d: d.push_cost(AWS, False) + d.pull_cost(AWS, False))
        summary.append(
            f"- {name}: fewest bytes moved: {fewest.chunker} ({_mib(fewest.new_stored_bytes)}); "
            f"counting the v2 manifest a pull fetches: {with_manifest.chunker} "
            f"({_mib(pulled)}, {with_manifest.manifest_bytes / pulled:.0%} of it the manifest); "
            f"cheapest push + pull, packed: {cheapest.chunker} "
            f"({dollars(cheapest.push_cost(AWS, True) + cheapest.pull_cost(AWS, True))}); "
            f"cheapest, one object per block: {single.chunker} "
            f"({dollars(single.push_cost(AWS, False) + single.pull_cost(AWS, False))})"
        )
        lines += [
            f"## {name}: v1 {_mib(tree_size(root / 'v1'))}, v2 {_mib(tree_size(root / 'v2'))}, "
            f"changed files in v2 {_mib(whole)}",
            "",
            table(results, whole),
        ]
    lines += ["## Summary", "", *summary, "", f"Run time: {time.monotonic() - started:.0f} s."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chunk_sweep.md").write_text("\n".join(lines) + "\n")
    report["seconds"] = time.monotonic() - started
    (args.out / "chunk_sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
