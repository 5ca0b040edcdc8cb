"""The CLI's commands: parse references, call `aetherfs.ops`, print text or JSON."""

from __future__ import annotations

import argparse
import gc as pygc  # `gc` is the command below
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aetherfs.cli.context import Context, HubContext
from aetherfs.cli.heap import fix_mmap_threshold
from aetherfs.cli.output import human_bytes, print_json, table, when
from aetherfs.cli.progress import byte_progress
from aetherfs.core.ids import ManifestId
from aetherfs.core.names import Ref, check_dataset_name, check_tag
from aetherfs.core.tags import SignedTag, TagHistory
from aetherfs.core.trust import TrustedTag
from aetherfs.errors import IntegrityError, InvalidInput, NotFound
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.sources import BlockSource, CacheSource, StoreSource
from aetherfs.keys import ReaderKeyring, keyring_path, save_keyring
from aetherfs.ops.compare import describe
from aetherfs.ops.compare import diff as diff_manifests
from aetherfs.ops.gc import collect_garbage
from aetherfs.ops.pull import pull_manifest
from aetherfs.ops.push import push_directory
from aetherfs.ops.scan import scan_directory
from aetherfs.repository import Repository, StoreInfo
from aetherfs.store import layout, open_store
from aetherfs.trust import TRUST_DIR, TrustStore

LATEST = "latest"
PUSHES_DIR = "pushes"  # push journals under the state directory (ops/push_journal.py)
AGENT_STATE = ".agent"  # an agent's state directory under its data root (AgentConfig.state_dir)


def trust_store(ctx: Context, data_root: str | None = None) -> TrustStore:
    """This user's trusted tag state, or (`data_root`) the copy of the agent writing there."""
    if data_root is None:
        return TrustStore(ctx.settings.state_dir / TRUST_DIR)
    root = Path(data_root).expanduser().absolute()
    return TrustStore.for_agent(root / AGENT_STATE, root, ctx.settings.store_url)


def resolve(ctx: Context, repo: Repository, ref: Ref) -> SignedTag:
    """The tag's current record, refused if older than one this user trusted, else trusted."""
    signed = repo.resolve(ref.dataset, ref.tag)
    trust_store(ctx).accept(repo.keyring.store_id, signed.record)
    return signed


def say(message: str) -> None:
    """A line for the user that is not the command's output (on stderr, like errors)."""
    tqdm.write(f"aetherfs: {message}", file=sys.stderr)  # above a progress bar, if one shows


def warn(message: str) -> None:
    say(f"warning: {message}")


def push(ctx: Context, args: argparse.Namespace) -> int:
    fix_mmap_threshold()  # push's 1 MiB batches would otherwise grow the heap: aetherfs/cli/heap.py
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
            journal_dir=ctx.settings.state_dir / PUSHES_DIR,
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
                "packs": s.packs,
                "resumed_packs": s.resumed_packs,
                "resumed_bytes": s.resumed_bytes,
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
    if s.resumed_packs:
        print(
            f"  resumed    {human_bytes(s.resumed_bytes)} in {s.resumed_packs} packs an "
            "interrupted push had uploaded"
        )
    print(f"  dedup      {ratio}")
    if s.seconds > 0:
        print(f"  speed      {human_bytes(s.bytes / s.seconds)}/s over {s.seconds:.1f} s")
    return 0


def pull(ctx: Context, args: argparse.Namespace) -> int:
    ref = Ref.parse(args.ref)
    repo = ctx.repository()
    signed = resolve(ctx, repo, ref)
    manifest_id = signed.record.manifest_id
    manifest = repo.get_manifest(ref.dataset, manifest_id)
    s = ctx.settings
    # The cache is opt-in: writing every block twice cost a fresh pull 0.5-0.7 CPU s per GiB,
    # and an interrupted pull resumes from its staging tree without it (docs/benchmarks.md).
    # A full cache disk is no reason to fail a pull: it goes on without caching, warned once.
    use_cache = (args.cache or args.cache_limit is not None) and not args.no_cache
    cache = BlockCache(s.cache_dir, s.cache_limit, on_full=warn) if use_cache else None
    sources: list[BlockSource] = [CacheSource(cache)] if cache else []
    sources.append(StoreSource(repo, ref.dataset))
    # What start-up made (modules, the store's client, the manifest: some 40,000 objects)
    # lives until the process ends: out of the collector's sight, the full collections a pull
    # triggers skip it (0.04 CPU s of a 1 GiB pull). Freed by reference counts as ever.
    pygc.freeze()
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
            state_dir=ctx.settings.state_dir,
            wait=args.wait,
            what=str(ref),
            on_wait=say,
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
    if args.repair:
        return repair(ctx, ref, args)
    if args.new_tag is None:
        raise InvalidInput("name the tag to set: aetherfs tag NAME:TAG NEWTAG")
    if args.manifest:
        raise InvalidInput("--manifest goes with --repair")
    new_tag = check_tag(args.new_tag)
    repo = ctx.repository()
    current = resolve(ctx, repo, ref)
    signed = repo.set_tag(ref.dataset, new_tag, current.record.manifest_id)
    # Our own write: other writers may have moved the tag since, and been trusted already.
    trust_store(ctx).remember(repo.keyring.store_id, signed.record)
    _print_tag(ctx, signed)
    return 0


def _print_tag(ctx: Context, signed: SignedTag, **extra: Any) -> None:
    r = signed.record
    if ctx.json:
        print_json(
            {"dataset": r.dataset, "tag": r.tag, "manifest": r.manifest_id.hex(), "seq": r.seq}
            | extra
        )
    else:
        print(f"{r.dataset}:{r.tag} -> {r.manifest_id.short()} (seq {r.seq})")


def repair(ctx: Context, ref: Ref, args: argparse.Namespace) -> int:
    """`tag --repair NAME:TAG`: re-sign a damaged tag from its last good record."""
    if args.new_tag is not None:
        raise InvalidInput("--repair takes only NAME:TAG")
    repo = ctx.store_repository(needs="--repair (it rewrites the tag with the signing key)")
    trust = trust_store(ctx)
    store_id = repo.keyring.store_id
    known = trust.load(store_id).get(ref.dataset, ref.tag)
    manifest = ManifestId.from_hex(args.manifest) if args.manifest else None
    signed, found = repo.repair_tag(ref.dataset, ref.tag, known, manifest)
    if signed is None:
        if ctx.json:
            print_json({"dataset": ref.dataset, "tag": ref.tag, "repaired": False})
        else:
            print(f"{ref} is not damaged: nothing to repair")
        return 0
    trust.accept(store_id, signed.record)
    if not ctx.json:
        for why in found.damaged:
            print(f"dropped {why}", file=sys.stderr)
        print(f"repaired {ref}: kept {len(found.good)} good records, re-signed as", end=" ")
    _print_tag(ctx, signed, repaired=True, kept=len(found.good), dropped=list(found.damaged))
    return 0


def tags(ctx: Context, args: argparse.Namespace) -> int:
    dataset = check_dataset_name(args.dataset)
    repo = ctx.repository()
    scan = repo.scan_tags(dataset)  # through a hub too: the hub names the damaged ones
    found = scan.histories
    if not found and not scan.damaged:
        raise NotFound(f"dataset {dataset} has no tags (see `aetherfs ls`)")
    trusted = trust_store(ctx).load(repo.keyring.store_id)
    problems = [why for _, why in sorted(scan.damaged.items())]
    for tag_name, history in sorted(found.items()):
        problem = _against_trust(history, trusted.get(dataset, tag_name))
        if problem:
            problems.append(problem)
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
    else:
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
        if rows:
            print(table(rows, ["TAG", "MANIFEST", "SEQ", "SET"]))
    for problem in problems:
        print(f"aetherfs: error: {problem}", file=sys.stderr)
    return IntegrityError.exit_code if problems else 0


def _against_trust(history: TagHistory, trusted: TrustedTag | None) -> str | None:
    """Why a listed history is not the whole one this user saw, if it is not."""
    r = history.current.record
    if trusted is None or r.seq > trusted.seq or trusted.same_record(r):
        return None
    if r.seq == trusted.seq:
        return (
            f"{r.dataset}:{r.tag}: the store's record with seq {r.seq} is not the one trusted "
            "here: its history was forked or replayed"
        )
    return (
        f"{r.dataset}:{r.tag}: the store's history ends at seq {r.seq}, but seq {trusted.seq} "
        f"(manifest {trusted.manifest_id.short()}) was trusted here: the history shown is cut "
        "down (replayed or rolled back), not whole"
    )


def _store_id(ctx: Context) -> str:
    """The id of the store named; on a store, read from its aetherfs.json (no keyring needed,
    so an admin can reset an agent's copy without the agent's keys)."""
    if isinstance(ctx, HubContext):
        return ctx.repository().keyring.store_id
    s = ctx.settings
    store = open_store(s.store_url, s.s3_endpoint, s.s3_region)
    try:
        return StoreInfo.from_json(store.get(layout.STORE_INFO)).store_id
    except NotFound:
        raise NotFound(f"the store {store.url} is empty: nothing is trusted of it") from None


def trust(ctx: Context, args: argparse.Namespace) -> int:
    """`trust show` and `trust reset`: the tag records this user (or an agent) trusts."""
    store = trust_store(ctx, args.data_root)
    if args.action == "reset":
        dataset = check_dataset_name(args.dataset) if args.dataset else None
        store_id = _store_id(ctx)
        dropped = store.forget(store_id, dataset)
        if ctx.json:
            print_json({"store_id": store_id, "forgotten": dropped})
        else:
            which = f"of {dataset} " if dataset else ""
            print(
                f"forgot {len(dropped)} trusted tags {which}of store {store_id} in "
                f"{store.directory}; the next read trusts the store's tags as they are then"
            )
        return 0
    states = store.stores()
    if ctx.json:
        print_json(
            {
                s.store_id: {
                    key: {"seq": t.seq, "manifest": t.manifest_id.hex(), "time": t.time}
                    for key, t in s.items()
                }
                for s in states
            }
        )
        return 0
    rows = [
        [s.store_id, key, str(t.seq), t.manifest_id.short(), when(t.time)]
        for s in states
        for key, t in s.items()
    ]
    if not rows:
        print(f"no tags trusted yet in {store.directory}")
        return 0
    print(table(rows, ["STORE", "TAG", "SEQ", "MANIFEST", "SET"]))
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
    manifest_id = resolve(ctx, repo, ref).record.manifest_id
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
    id_a = resolve(ctx, repo, a).record.manifest_id
    id_b = resolve(ctx, repo, b).record.manifest_id
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
    repo = ctx.store_repository(needs="gc (it deletes from the store)")
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
                "pushes_in_progress": result.pushes_in_progress,
                "held_packs": result.held_packs,
            }
        )
        return 0
    verb = "would remove" if result.dry_run else "removed"
    print(
        f"{verb} {len(result.removed_packs)} packs and {len(result.removed_manifests)} "
        f"manifests ({human_bytes(result.freed_bytes)}); kept {result.live_packs} packs of "
        f"{result.live_manifests} tagged versions"
    )
    if result.pushes_in_progress:
        print(
            f"spared {result.held_packs} packs that {result.pushes_in_progress} pushes in "
            "progress will name"
        )
    return 0


def keys(ctx: Context, args: argparse.Namespace) -> int:
    repo = ctx.store_repository(needs="`aetherfs keys` (it shows the store's keyring)")
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
    repo = ctx.store_repository(needs="`keys export` (it needs the store's own keyring)")
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
