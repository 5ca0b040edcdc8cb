"""`aetherfs`: publish, tag, pull and compare dataset versions.

Every command takes `--store URL` (or AETHERFS_STORE): `file:///path` or `s3://bucket/prefix`
(AETHERFS_S3_ENDPOINT for S3-compatible servers). Without it, an embedded store under
XDG_DATA_HOME is used.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from aetherfs import __version__
from aetherfs.cli import agent_cmd, commands, hub_cmd
from aetherfs.config import Settings, parse_size
from aetherfs.errors import AetherError
from aetherfs.ops.materialise import DEFAULT_WORKERS

EXAMPLES = """\
examples:
  aetherfs push ./geo team/geo-db:1.0.0 --tag stable
  aetherfs pull team/geo-db:stable ./geo-live
  aetherfs diff team/geo-db:1.0.0 team/geo-db:1.1.0
  aetherfs tags team/geo-db --history
"""


def _common(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    """--store, --keys, --hub. `nested`: on a sub-action whose parent has them too.

    A sub-action's defaults would overwrite what was given before it (`hub --store X token
    create`), so there they default to nothing at all (SUPPRESS) and the parent's stand.
    """
    default = argparse.SUPPRESS if nested else None
    parser.add_argument(
        "--store",
        metavar="URL",
        default=default,
        help="store URL (default: AETHERFS_STORE, else an embedded store under XDG_DATA_HOME)",
    )
    parser.add_argument(
        "--keys",
        metavar="FILE",
        default=default,
        help="keyring file (default: AETHERFS_KEYS, "
        "else one per store under XDG_CONFIG_HOME/aetherfs/keys)",
    )
    parser.add_argument(
        "--hub", metavar="URL", default=default, help="work through this hub (or AETHERFS_HUB)"
    )


def _json(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    default = argparse.SUPPRESS if nested else False
    parser.add_argument(
        "--json", action="store_true", default=default, help="print JSON instead of text"
    )


def positive_int(text: str) -> int:
    """An argparse type: a count of at least one (workers, threads)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aetherfs",
        description="Publish dataset versions as encrypted, deduplicated blocks and pull them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aetherfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("push", help="publish a directory as a new version of a dataset")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("ref", metavar="NAME:TAG", help="dataset and tag, e.g. team/geo-db:1.0.0")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="also point this tag at the new version (repeatable)",
    )
    p.add_argument("--no-latest", action="store_true", help="do not move the `latest` channel")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=max(2, os.cpu_count() or 2),
        help="parallel seal/upload threads (default: one per core, at least 2)",
    )
    _common(p)
    _json(p)
    p.set_defaults(run=commands.push)

    p = sub.add_parser("pull", help="materialise a version into a directory, atomically")
    p.add_argument("ref", metavar="NAME:TAG")
    p.add_argument("directory", metavar="DIR")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace DIR even if it holds files not made by aetherfs pull",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="parallel fetch threads (default: two per core, at most 8)",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        help="also keep the blocks in the local block cache, and read from it (default: off; "
        "an interrupted pull resumes from what it wrote anyway)",
    )
    p.add_argument(
        "--cache-limit", metavar="SIZE", help="use the block cache, bounded (default 4G)"
    )
    p.add_argument(
        "--no-cache", action="store_true", help="do not use the block cache (the default)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another pull is writing into DIR, wait for it to finish instead of failing",
    )
    _common(p)
    _json(p)
    p.set_defaults(run=commands.pull)

    p = sub.add_parser(
        "tag",
        help="point a tag at the version another tag names, or repair a damaged tag",
        description="aetherfs tag NAME:TAG NEWTAG points NEWTAG at the version TAG names. "
        "aetherfs tag --repair NAME:TAG rewrites a damaged tag record: the records that still "
        "verify, then the last good one re-signed with a higher seq (needs the signing key).",
    )
    p.add_argument("ref", metavar="NAME:TAG")
    p.add_argument("new_tag", metavar="NEWTAG", nargs="?")
    p.add_argument(
        "--repair", action="store_true", help="re-sign a damaged tag from its last good record"
    )
    p.add_argument(
        "--manifest",
        metavar="ID",
        help="with --repair: the version to re-sign when no good record is left",
    )
    _common(p)
    _json(p)
    p.set_defaults(run=commands.tag)

    p = sub.add_parser("tags", help="list a dataset's tags")
    p.add_argument("dataset", metavar="NAME")
    p.add_argument("--history", action="store_true", help="show every version each tag named")
    _common(p)
    _json(p)
    p.set_defaults(run=commands.tags)

    p = sub.add_parser(
        "trust",
        help="show or reset the tag records trusted here (what refuses a rolled-back tag)",
        description="Every reader remembers the newest record of each tag it accepted "
        "(XDG_STATE_HOME/aetherfs/trust; an agent under DATA_ROOT/.agent/trust) and refuses "
        "older ones. After a store was really reset, `trust reset` accepts it as it is now.",
    )
    p.add_argument("action", choices=("show", "reset"))
    p.add_argument("--dataset", metavar="NAME", help="reset: only this dataset's tags")
    p.add_argument(
        "--data-root", metavar="DIR", help="the copy of the agent whose data root is DIR"
    )
    _common(p)
    _json(p)
    p.set_defaults(run=commands.trust)

    p = sub.add_parser("ls", help="list datasets")
    _common(p)
    _json(p)
    p.set_defaults(run=commands.ls)

    p = sub.add_parser("inspect", help="show a version's files, sizes and blocks")
    p.add_argument("ref", metavar="NAME:TAG")
    _common(p)
    _json(p)
    p.set_defaults(run=commands.inspect)

    p = sub.add_parser("diff", help="what changed from A to B, and what B costs a holder of A")
    p.add_argument("a", metavar="NAME:A")
    p.add_argument("b", metavar="NAME:B")
    _common(p)
    _json(p)
    p.set_defaults(run=commands.diff)

    p = sub.add_parser("gc", help="remove packs and manifests that no tag has ever named")
    p.add_argument(
        "--grace",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="spare objects younger than this; the packs of pushes in progress are spared "
        "whatever this says",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    _common(p)
    _json(p)
    p.set_defaults(run=commands.gc)

    p = sub.add_parser(
        "keys", help="show where the keyring of a store is, or export a reader's keyring"
    )
    _common(p)
    _json(p)
    p.set_defaults(run=commands.keys)
    actions = p.add_subparsers(dest="keys_action", metavar="ACTION")
    e = actions.add_parser(
        "export",
        help="write a reader's keyring: dataset keys and trusted signers, nothing that writes",
    )
    e.add_argument(
        "--reader",
        metavar="FILE",
        required=True,
        help="the file to write (0600; never overwritten)",
    )
    e.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME",
        help="a dataset the reader may read (repeatable; default: every dataset of the store)",
    )
    _common(e, nested=True)
    _json(e, nested=True)
    e.set_defaults(run=commands.keys_export)

    agent_cmd.register(sub)
    hub_cmd.register(sub, _common, _json)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        limit = getattr(args, "cache_limit", None)
        settings = Settings.from_env(
            os.environ,
            store=args.store,
            keys=args.keys,
            cache_limit=parse_size(limit) if limit else None,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        context = hub_cmd.make_context(args, settings, getattr(args, "json", False))
        code: int = args.run(context, args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen below
    except AetherError as exc:
        print(f"aetherfs: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a last resort: our own code translates the ones it expects
        # The reader of our output left (`aetherfs ls | head`); not a pipe to a child of ours.
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            return _quiet_after_broken_pipe()
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"aetherfs: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 9
    except KeyboardInterrupt:
        print("aetherfs: interrupted", file=sys.stderr)
        return 130
    return code


def _stdout_gone() -> bool:
    """Whether whoever read our output has closed it (`aetherfs ls | head`)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _quiet_after_broken_pipe() -> int:
    """Exit as CLIs do when their reader leaves: no message, status 141 (128 + SIGPIPE)."""
    # Python flushes stdout again at exit: point it at /dev/null so that says nothing either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
