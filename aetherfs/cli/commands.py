"""The CLI's commands: parse references, call `aetherfs.ops`, print text or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aetherfs.cli.context import Context
from aetherfs.cli.output import human_bytes, print_json, table, when
from aetherfs.cli.progress import byte_progress
from aetherfs.core.names import Ref, check_dataset_name, check_tag
from aetherfs.errors import InvalidInput, NotFound
from aetherfs.fetch.sources import BlockSource, CacheSource, StoreSource
from aetherfs.heap import fix_mmap_threshold
from aetherfs.keys import ReaderKeyring, keyring_path, save_keyring
from aetherfs.ops.compare import describe
from aetherfs.ops.compare import diff as diff_manifests
from aetherfs.ops.gc import collect_garbage
from aetherfs.ops.pull import pull_manifest
from aetherfs.ops.push import push_directory
from aetherfs.ops.scan import scan_directory

LATEST = "latest"


def push(ctx: Context, args: argparse.Namespace) -> int:
    fix_mmap_threshold()  # push's 1 MiB batches would otherwise grow the heap: aetherfs/heap.py
    ref = Ref.parse(args.ref)
    tags = [ref.tag, *(check_tag(t) for t in args.tag)]
    if not args.no_latest and LATEST not in tags:
        tags.append(LATEST)
    directory = Path(args.directory)
    entries = scan_directory(directory)
    total = sum(e.size for e in entries)
    repo = ctx.repository(create=True)
    with byte_progress(total, f"push {ref}") as progress:
        result = push_directory(
            repo,
            directory,
            ref.dataset,
            list(dict.fromkeys(tags)),
            workers=args.workers,
            progress=progress,
            entries=entries,
        )
    s = result.stats
    if ctx.json:
        print_json(
            {
                "dataset": result.dataset,
                "manifest": result.manifest_id.hex(),
                "tags": list(result.tags),
                "files": s.files,
                "bytes": s.bytes,
                "blocks": s.blocks,
                "unique_blocks": s.unique_blocks,
                "new_blocks": s.new_blocks,
                "new_bytes": s.new_bytes,
                "seconds": s.seconds,
                "dedup_ratio": None if s.new_bytes == 0 else s.dedup_ratio,
            }
        )
        return 0
    ratio = "all blocks already stored" if not s.new_bytes else f"{s.dedup_ratio:.2f}x"
    print(
        f"pushed {result.dataset} as {result.manifest_id.short()} (tags: {', '.join(result.tags)})"
    )
    print(f"  files      {s.files}")
    print(f"  bytes      {human_bytes(s.bytes)} in {s.blocks} blocks ({s.unique_blocks} unique)")
    print(f"  new bytes  {human_bytes(s.new_bytes)} in {s.new_blocks} new blocks uploaded")
    print(f"  dedup      {ratio}")
    if s.seconds > 0:
        print(f"  speed      {human_bytes(s.bytes / s.seconds)}/s over {s.seconds:.1f} s")
    return 0


def pull(ctx: Context, args: argparse.Namespace) -> int:
    ref = Ref.parse(args.ref)
    repo = ctx.repository()
    signed = repo.resolve(ref.dataset, ref.tag)
    manifest_id = signed.record.manifest_id
    manifest = repo.get_manifest(ref.dataset, manifest_id)
    cache = None if args.no_cache else ctx.cache()
    sources: list[BlockSource] = [CacheSource(cache)] if cache else []
    sources.append(StoreSource(repo))
    with byte_progress(manifest.total_size, f"pull {ref}") as progress:
        result = pull_manifest(
            manifest,
            manifest_id,
            Path(args.directory),
            sources,
            cache,
            workers=args.workers,
            force=args.force,
            progress=progress,
        )
    counts = result.counts
    if ctx.json:
        print_json(
            {
                "dataset": result.dataset,
                "tag": ref.tag,
                "manifest": manifest_id.hex(),
                "directory": str(result.target),
                "files": result.files,
                "bytes": result.bytes,
                "linked_files": result.linked_files,
                "linked_bytes": result.linked_bytes,
                "blocks_by_source": counts.blocks,
                "bytes_by_source": counts.bytes,
                "seconds": result.seconds,
            }
        )
        return 0
    print(f"pulled {ref} ({manifest_id.short()}) into {result.target}")
    print(f"  files   {result.files}, {human_bytes(result.bytes)}")
    if result.linked_files:
        print(
            f"  linked  {result.linked_files} unchanged files, {human_bytes(result.linked_bytes)}"
            " (kept from the previous pull, not rewritten)"
        )
    for source in ("local", "cache", "store"):
        if source in counts.blocks:
            print(
                f"  {source:<7} {counts.blocks[source]} blocks, {human_bytes(counts.bytes[source])}"
            )
    return 0


def tag(ctx: Context, args: argparse.Namespace) -> int:
    ref = Ref.parse(args.ref)
    new_tag = check_tag(args.new_tag)
    repo = ctx.repository()
    current = repo.resolve(ref.dataset, ref.tag)
    signed = repo.set_tag(ref.dataset, new_tag, current.record.manifest_id)
    if ctx.json:
        print_json(
            {
                "dataset": ref.dataset,
                "tag": new_tag,
                "manifest": signed.record.manifest_id.hex(),
                "seq": signed.record.seq,
            }
        )
    else:
        print(
            f"{ref.dataset}:{new_tag} -> {signed.record.manifest_id.short()} "
            f"(seq {signed.record.seq})"
        )
    return 0


def tags(ctx: Context, args: argparse.Namespace) -> int:
    dataset = check_dataset_name(args.dataset)
    repo = ctx.repository()
    found = repo.list_tags(dataset)
    if not found:
        raise NotFound(f"dataset {dataset} has no tags (see `aetherfs ls`)")
    if ctx.json:
        print_json(
            {
                tag_name: [
                    {
                        "manifest": r.record.manifest_id.hex(),
                        "seq": r.record.seq,
                        "time": r.record.time,
                        "signer": r.record.signer.hex(),
                    }
                    for r in (history.records if args.history else (history.current,))
                ]
                for tag_name, history in found.items()
            }
        )
        return 0
    rows = []
    for tag_name, history in sorted(found.items()):
        records = list(reversed(history.records)) if args.history else [history.current]
        for index, r in enumerate(records):
            rows.append(
                [
                    tag_name if index == 0 else "",
                    r.record.manifest_id.short(),
                    str(r.record.seq),
                    when(r.record.time),
                ]
            )
    print(table(rows, ["TAG", "MANIFEST", "SEQ", "SET"]))
    return 0


def ls(ctx: Context, args: argparse.Namespace) -> int:
    datasets: list[dict[str, Any]] = []
    repo = ctx.repository()  # a store that does not exist is an error, not an empty list
    for name in repo.list_datasets():
        found = repo.list_tags(name)
        latest = found.get(LATEST)
        updated = max((h.current.record.time for h in found.values()), default=None)
        datasets.append(
            {
                "dataset": name,
                "tags": sorted(found),
                "latest": latest.current.record.manifest_id.hex() if latest else None,
                "updated": updated,
            }
        )
    if ctx.json:
        print_json(datasets)
        return 0
    if not datasets:
        print("no datasets yet: publish one with `aetherfs push DIR NAME:TAG`")
        return 0
    rows = [
        [
            d["dataset"],
            str(len(d["tags"])),
            ", ".join(d["tags"])[:60],
            when(d["updated"]) if d["updated"] else "-",
        ]
        for d in datasets
    ]
    print(table(rows, ["DATASET", "TAGS", "NAMES", "UPDATED"]))
    return 0


def inspect(ctx: Context, args: argparse.Namespace) -> int:
    ref = Ref.parse(args.ref)
    repo = ctx.repository()
    manifest_id = repo.resolve(ref.dataset, ref.tag).record.manifest_id
    info = describe(repo.get_manifest(ref.dataset, manifest_id), manifest_id)
    if ctx.json:
        print_json(info)
        return 0
    print(f"{ref} -> manifest {manifest_id.hex()}")
    print(f"  created  {when(info['created'])}")
    print(f"  files    {info['total_files']}, {human_bytes(info['total_bytes'])}")
    print(
        f"  blocks   {info['blocks']} ({info['unique_blocks']} unique), "
        f"{human_bytes(info['stored_bytes'])} stored"
    )
    rows = [
        [
            f["kind"][0],
            f["mode"],
            human_bytes(f["size"]) if f["kind"] == "file" else "-",
            str(f["blocks"]),
            f["path"] + (f" -> {f['target']}" if "target" in f else ""),
        ]
        for f in info["files"]
    ]
    print(table(rows, ["K", "MODE", "SIZE", "BLOCKS", "PATH"]))
    return 0


def diff(ctx: Context, args: argparse.Namespace) -> int:
    a = Ref.parse(args.a)
    b = Ref.parse(args.b)
    if a.dataset != b.dataset:
        raise InvalidInput("diff compares two versions of one dataset")
    repo = ctx.repository()
    id_a = repo.resolve(a.dataset, a.tag).record.manifest_id
    id_b = repo.resolve(b.dataset, b.tag).record.manifest_id
    result = diff_manifests(repo.get_manifest(a.dataset, id_a), repo.get_manifest(b.dataset, id_b))
    result.update(
        {"a": {"tag": a.tag, "manifest": id_a.hex()}, "b": {"tag": b.tag, "manifest": id_b.hex()}}
    )
    if ctx.json:
        print_json(result)
        return 0
    print(f"{a} ({id_a.short()}) -> {b} ({id_b.short()})")
    rows = [
        [
            c["change"],
            human_bytes(c["old_size"]),
            human_bytes(c["new_size"]),
            human_bytes(c["new_bytes"]),
            c["path"],
        ]
        for c in result["changes"]
    ]
    if rows:
        print(table(rows, ["CHANGE", "OLD", "NEW", "TO FETCH", "PATH"]))
    else:
        print("no file changed")
    print(
        f"a holder of {a.tag} fetches {result['blocks_to_fetch']} blocks, "
        f"{human_bytes(result['bytes_to_fetch'])} of {human_bytes(result['total_stored_bytes'])}"
        f" ({result['saving']:.1%} saved)"
    )
    return 0


def gc(ctx: Context, args: argparse.Namespace) -> int:
    if args.grace < 0:
        raise InvalidInput("--grace cannot be negative")
    repo = ctx.repository()
    if isinstance(repo.keyring, ReaderKeyring):
        repo.keyring.require_writer("gc")
    result = collect_garbage(repo, args.grace * 3600, dry_run=args.dry_run)
    if ctx.json:
        print_json(
            {
                "live_manifests": result.live_manifests,
                "live_packs": result.live_packs,
                "removed_manifests": list(result.removed_manifests),
                "removed_packs": list(result.removed_packs),
                "freed_bytes": result.freed_bytes,
                "dry_run": result.dry_run,
            }
        )
        return 0
    verb = "would remove" if result.dry_run else "removed"
    print(
        f"{verb} {len(result.removed_packs)} packs and {len(result.removed_manifests)} "
        f"manifests ({human_bytes(result.freed_bytes)}); kept {result.live_packs} packs of "
        f"{result.live_manifests} tagged versions"
    )
    return 0


def keys(ctx: Context, args: argparse.Namespace) -> int:
    repo = ctx.repository()
    s = ctx.settings
    keyring = repo.keyring
    path = s.keys_path or keyring_path(s.keys_dir, keyring.store_id)
    info: dict[str, Any] = {
        "store": repo.store.url,
        "store_id": keyring.store_id,
        "keyring": str(path),
        "kind": "reader" if isinstance(keyring, ReaderKeyring) else "writer",
        "can_sign": keyring.signing_seed is not None,
    }
    if isinstance(keyring, ReaderKeyring):
        info["datasets"] = sorted(keyring.dataset_keys)
    if ctx.json:
        print_json(info)
    else:
        for k, v in info.items():
            print(f"{k:<9} {', '.join(v) if isinstance(v, list) else v}")
    return 0


def keys_export(ctx: Context, args: argparse.Namespace) -> int:
    """Write a reader's keyring: what reading the named datasets needs, nothing more."""
    repo = ctx.repository()
    stored = repo.list_datasets()
    names = [check_dataset_name(n) for n in args.dataset] or stored
    missing = sorted(set(names) - set(stored))
    if missing:
        raise NotFound(
            f"the store {repo.store.url} has no dataset {', '.join(missing)} "
            "(see `aetherfs ls`); push it before giving a reader its key"
        )
    if not names:
        raise NotFound(
            f"the store {repo.store.url} has no datasets yet: push one before exporting a "
            "reader's keyring"
        )
    target = Path(args.reader)
    reader = repo.keyring.for_reader(names)
    save_keyring(reader, target, replace=False)
    if ctx.json:
        print_json({"keyring": str(target), "store_id": reader.store_id, "datasets": names})
    else:
        print(
            f"wrote a reader's keyring for {len(names)} dataset(s) of store {reader.store_id} "
            f"to {target} (0600): it reads {', '.join(sorted(names))} and cannot write; "
            "give it to a reader, who passes --keys FILE"
        )
    return 0
