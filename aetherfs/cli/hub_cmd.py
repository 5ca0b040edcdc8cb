"""`aetherfs hub ...`: run the hub, and manage its API tokens and grants on the store."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from aetherfs.cli.context import Context, HubContext
from aetherfs.cli.output import print_json, table, when
from aetherfs.config import Settings
from aetherfs.errors import InvalidInput

# The hub's stack (trio, httpx, JWT and its crypto, the server) is imported inside the
# commands that use it, not by every `aetherfs` command at start-up.
if TYPE_CHECKING:
    from aetherfs.hub.config import HubConfig

EXAMPLES = """\
examples:
  aetherfs hub token create --name ci --admin      # prints the token once
  aetherfs hub --store s3://bucket/prefix --listen 127.0.0.1:7070
  aetherfs hub grant team/geo-db group:ops read
"""


def _pairs(values: list[str], what: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, mapped = value.partition("=")
        if not sep or not key or not mapped:
            raise InvalidInput(f"{what} takes CLAIM=GROUP, got {value!r}")
        pairs.append((key, mapped))
    return tuple(pairs)


def hub_config(args: argparse.Namespace) -> HubConfig:
    from aetherfs.hub.config import HubConfig, OidcConfig

    oidc = None
    if args.oidc_issuer:
        if not args.oidc_audience:
            raise InvalidInput("--oidc-issuer needs --oidc-audience")
        oidc = OidcConfig(
            issuer=args.oidc_issuer,
            audience=args.oidc_audience,
            username_claim=args.oidc_username_claim,
            groups_claim=args.oidc_groups_claim,
            group_map=_pairs(args.oidc_group_map, "--oidc-group-map"),
            admin_groups=tuple(args.oidc_admin_group),
        )
    return HubConfig(
        listen=args.listen,
        grpc_listen=args.grpc_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        insecure=args.insecure,
        oidc=oidc,
        poll_interval=args.poll_interval,
        cert_days=args.cert_days,
    )


def serve(ctx: Context, args: argparse.Namespace) -> int:
    import trio

    from aetherfs.hub.server import HubAddresses, serve_hub

    config = hub_config(args)
    repo = ctx.store_repository(create=True)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            addresses: HubAddresses = await nursery.start(serve_hub, config, repo)
            print(f"hub listening on {addresses.http}", flush=True)
            if addresses.grpc:
                print(f"hub gRPC listening on {addresses.grpc}", flush=True)
            print(f"hub store {repo.store.url}", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0


def token_create(ctx: Context, args: argparse.Namespace) -> int:
    from aetherfs.hub.audit import AuditLog
    from aetherfs.hub.auth import TokenRegistry

    repo = ctx.store_repository(create=True)
    secret = TokenRegistry(repo.store).create(
        args.name, "agent" if args.agent else "user", args.admin, args.group
    )
    AuditLog(repo.store).record(None, "token.create", None, name=args.name, admin=args.admin)
    if ctx.json:
        print_json({"name": args.name, "token": secret, "admin": args.admin})
    else:
        print(secret)
        print("keep it: it is shown only once", file=sys.stderr)
    return 0


def token_revoke(ctx: Context, args: argparse.Namespace) -> int:
    from aetherfs.hub.audit import AuditLog
    from aetherfs.hub.auth import TokenRegistry

    repo = ctx.store_repository()
    count = TokenRegistry(repo.store).revoke(args.name)
    AuditLog(repo.store).record(None, "token.revoke", None, name=args.name)
    print(f"revoked {count} token(s) named {args.name}")
    return 0


def token_list(ctx: Context, args: argparse.Namespace) -> int:
    from aetherfs.hub.auth import TokenRegistry

    tokens = TokenRegistry(ctx.store_repository().store).list()
    if ctx.json:
        print_json(
            [
                {
                    "name": t.name,
                    "kind": t.kind,
                    "admin": t.admin,
                    "groups": list(t.groups),
                    "created": t.created,
                }
                for t in tokens
            ]
        )
        return 0
    rows = [
        [t.name, t.kind, "yes" if t.admin else "", ",".join(t.groups), when(t.created)]
        for t in tokens
    ]
    print(table(rows, ["NAME", "KIND", "ADMIN", "GROUPS", "CREATED"]))
    return 0


def grant(ctx: Context, args: argparse.Namespace) -> int:
    from aetherfs.hub.acl import AclStore, role_level
    from aetherfs.hub.audit import AuditLog

    repo = ctx.store_repository()
    role = None if args.role == "none" else args.role
    if role is not None:
        role_level(role)
    acl = AclStore(repo.store).set(args.dataset, args.subject, role)
    AuditLog(repo.store).record(None, "grant.set", args.dataset, subject=args.subject, role=role)
    if ctx.json:
        print_json(acl.to_json())
    else:
        print(table([[s, r] for s, r in acl.grants], ["SUBJECT", "ROLE"]))
    return 0


def make_context(args: argparse.Namespace, settings: Settings, json_out: bool) -> Context:
    """The context of a command: through a hub when one is named, else on the store."""
    hub_url = getattr(args, "hub", None) or os.environ.get("AETHERFS_HUB")
    if not hub_url or args.command in ("hub", "login"):
        return Context(settings, json=json_out)
    if getattr(args, "store", None):
        raise InvalidInput("give --store or --hub, not both")
    from aetherfs.repository.hub_client import saved_token

    return HubContext(
        settings,
        json=json_out,
        hub_url=hub_url,
        token=saved_token(os.environ, hub_url),
        ca_file=os.environ.get("AETHERFS_HUB_CA") or None,
    )


def login(ctx: Context, args: argparse.Namespace) -> int:
    from aetherfs.repository.hub_client import HubClient, save_token

    hub_url = args.hub or os.environ.get("AETHERFS_HUB")
    if not hub_url:
        raise InvalidInput("name the hub: aetherfs login --hub URL (or set AETHERFS_HUB)")
    token = args.token
    if token is None:
        token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    if not token:
        raise InvalidInput("no token given")
    client = HubClient(hub_url, token, os.environ.get("AETHERFS_HUB_CA") or None)
    try:
        who = client.whoami()
    finally:
        client.close()
    path = save_token(os.environ, hub_url, token)
    if ctx.json:
        print_json({"hub": hub_url, "subject": who["subject"], "saved": str(path)})
    else:
        print(f"logged in to {hub_url} as {who['subject']} (token kept in {path})")
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[..., None],
    json_flag: Callable[[argparse.ArgumentParser], None],
) -> None:
    hub = sub.add_parser(
        "hub",
        help="run the hub (registry, REST, gRPC, files, web pages), or manage its tokens",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hub.add_argument("--listen", default="127.0.0.1:7070", metavar="HOST:PORT")
    hub.add_argument("--grpc-listen", metavar="HOST:PORT", help="also serve gRPC here")
    hub.add_argument("--tls-cert", metavar="FILE", help="PEM certificate for both listeners")
    hub.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    hub.add_argument(
        "--insecure", action="store_true", help="allow plain HTTP on an address not loopback"
    )
    hub.add_argument("--oidc-issuer", metavar="URL", help="accept JWTs from this OIDC issuer")
    hub.add_argument("--oidc-audience", metavar="AUD", help="the audience those JWTs must name")
    hub.add_argument("--oidc-username-claim", default="sub", metavar="CLAIM")
    hub.add_argument("--oidc-groups-claim", default="groups", metavar="CLAIM")
    hub.add_argument(
        "--oidc-group-map",
        action="append",
        default=[],
        metavar="VALUE=GROUP",
        help="map a groups-claim value to a hub group (repeatable)",
    )
    hub.add_argument(
        "--oidc-admin-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="members of this hub group are hub admins (repeatable)",
    )
    hub.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often watched datasets' tags are re-read from the store",
    )
    hub.add_argument(
        "--cert-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="how long the agent certificates it issues are valid (default 30; a fraction too)",
    )
    common(hub)
    hub.set_defaults(run=serve)
    actions = hub.add_subparsers(dest="hub_command", metavar="ACTION")

    token = actions.add_parser("token", help="API tokens (on the store, hashed)")
    token_actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = token_actions.add_parser("create", help="make a token and print it once")
    p.add_argument("--name", required=True)
    p.add_argument("--admin", action="store_true", help="a hub admin: every role everywhere")
    p.add_argument("--agent", action="store_true", help="the token of an agent (agent:NAME)")
    p.add_argument("--group", action="append", default=[], help="a group it belongs to")
    common(p, nested=True)
    json_flag(p)
    p.set_defaults(run=token_create)
    p = token_actions.add_parser("revoke", help="delete every token with this name")
    p.add_argument("--name", required=True)
    common(p, nested=True)
    p.set_defaults(run=token_revoke)
    p = token_actions.add_parser("list", help="list tokens (names, never secrets)")
    common(p, nested=True)
    json_flag(p)
    p.set_defaults(run=token_list)

    p = sub.add_parser("login", help="check a hub token and keep it for --hub commands")
    p.add_argument("--hub", metavar="URL", help="the hub (default: AETHERFS_HUB)")
    p.add_argument("--token", help="the token (default: asked for, or read from stdin)")
    json_flag(p)
    p.set_defaults(run=login, store=None, keys=None)

    p = actions.add_parser("grant", help="grant a role on a dataset (role `none` removes)")
    p.add_argument("dataset", metavar="NAME")
    p.add_argument("subject", metavar="SUBJECT", help="user:NAME, group:NAME, agent:ID, anyone")
    p.add_argument("role", choices=["read", "write", "admin", "none"])
    common(p, nested=True)
    json_flag(p)
    p.set_defaults(run=grant)
