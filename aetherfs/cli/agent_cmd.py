"""`aetherfs agent` (run the daemon in the foreground) and `aetherfs status` (ask it)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aetherfs.cli.context import Context, HubContext
from aetherfs.cli.output import human_bytes, print_json, table, when
from aetherfs.errors import AetherError, InvalidInput, StoreUnavailable

# The agent's stack (trio, httpx, its config and membership; the daemon: grpc, Hypercorn,
# Starlette) is imported inside the commands that run it: every other command, `aetherfs
# pull` first, would otherwise pay a quarter of a second of start-up for it.
if TYPE_CHECKING:
    import httpx

    from aetherfs.agent.config import AgentConfig
    from aetherfs.agent.membership import CertificateMembership


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent",
        help="run the agent daemon in the foreground: keep subscribed datasets live here",
        description="Keep subscribed channels materialised under DATA_ROOT/NAME/CHANNEL, "
        "switched atomically when a channel moves. Flags override the TOML config.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config (see docs/agent.md)")
    p.add_argument("--store", metavar="URL", help="store URL (default: AETHERFS_STORE)")
    p.add_argument("--keys", metavar="FILE", help="keyring file (default: AETHERFS_KEYS)")
    p.add_argument(
        "--hub",
        metavar="URL",
        help="work through this hub instead of a store (or AETHERFS_HUB; `aetherfs login` first)",
    )
    p.add_argument(
        "--report-interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="through a hub with an agent's token: report status this often (default 15)",
    )
    p.add_argument("--data-root", metavar="DIR", help="where versions are materialised")
    p.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="NAME:CHANNEL",
        help="keep this channel live (repeatable)",
    )
    p.add_argument(
        "--priority",
        action="append",
        default=[],
        metavar="NAME:CHANNEL=N",
        help="peers and the store serve this subscription's versions first when several "
        "download at once (higher first; default 0; repeatable)",
    )
    p.add_argument(
        "--cache-dir", metavar="DIR", help="block cache (default DATA_ROOT/.agent/cache)"
    )
    p.add_argument("--cache-limit", metavar="SIZE", help="block cache bound (default 4G)")
    p.add_argument("--keep-versions", type=int, metavar="N", help="old versions kept (default 1)")
    p.add_argument(
        "--cache-linger",
        type=float,
        metavar="SECONDS",
        help="a live version's blocks stay in the cache this long after a peer last read one "
        "there, then its tree serves them (default 60)",
    )
    p.add_argument("--poll-interval", type=float, metavar="SECONDS", help="default 10")
    p.add_argument("--retry-max", type=float, metavar="SECONDS", help="longest backoff (60)")
    p.add_argument(
        "--fetch-workers",
        type=int,
        metavar="N",
        help="batches fetched at once (default: two per core, at most 8)",
    )
    p.add_argument("--store-rate", metavar="SIZE", help="cap store reads at SIZE per second")
    p.add_argument("--listen-http", metavar="HOST:PORT", help="loopback REST ('' = off)")
    p.add_argument("--listen-socket", metavar="PATH", help="Unix socket REST ('' = off)")
    p.add_argument("--listen-grpc", metavar="HOST:PORT", help="loopback gRPC ('' = off)")
    p.add_argument("--listen-grpc-socket", metavar="PATH", help="Unix socket gRPC ('' = off)")
    p.add_argument(
        "--wait-for-lock",
        action="store_true",
        default=None,
        help="wait for another agent on the data root to stop instead of failing",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        help="follow a data root another agent writes (a shared mount): serve, fetch nothing",
    )
    p.add_argument(
        "--join-token",
        metavar="TOKEN",
        help="through a hub: enrol in its fleet with this join token at first start (or "
        "AETHERFS_JOIN_TOKEN); the certificate is kept in DATA_ROOT/.agent/fleet.json",
    )
    p.add_argument("--join-token-file", metavar="FILE", help="read the join token from FILE")
    p.add_argument("--agent-name", metavar="NAME", help="name to enrol under (default: agent id)")
    p.add_argument(
        "--revocation-interval",
        type=float,
        metavar="SECONDS",
        help="fetch the fleet's revocation list this often (default 300)",
    )
    peers = p.add_argument_group("peer exchange (on by default; docs/peers.md)")
    peers.add_argument(
        "--no-peers", action="store_true", default=None, help="fetch from the store only"
    )
    peers.add_argument(
        "--peer-listen", metavar="ADDRESS:PORT", help="peer protocol listen address (0.0.0.0:7422)"
    )
    peers.add_argument(
        "--peer-announce",
        metavar="ADDRESS",
        help="the IPv4 address told to peers (default: that of the interface to the LAN)",
    )
    peers.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="ADDRESS:PORT",
        help="a static peer, dialled whatever discovery finds (repeatable)",
    )
    peers.add_argument(
        "--no-mdns", action="store_true", default=None, help="no mDNS: static peers only"
    )
    peers.add_argument(
        "--peer-upload-rate", metavar="SIZE", help="cap blocks sent to peers at SIZE per second"
    )
    peers.add_argument(
        "--peer-download-rate",
        metavar="SIZE",
        help="cap blocks received from peers at SIZE per second",
    )
    p.set_defaults(run=agent)

    p = sub.add_parser(
        "status",
        help="what the local agent holds and how it is doing; --wait until a channel is live",
    )
    p.add_argument("--config", metavar="FILE", help="the agent's TOML config (finds its socket)")
    p.add_argument("--data-root", metavar="DIR", help="the agent's data root (finds its socket)")
    p.add_argument("--socket", metavar="PATH", help="the agent's REST Unix socket")
    p.add_argument("--url", metavar="URL", help="the agent's loopback REST URL")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--wait",
        metavar="NAME:CHANNEL",
        help="wait until the agent has this channel live, following its watch stream (exit 0; "
        "progress on stderr)",
    )
    p.add_argument(
        "--manifest",
        metavar="ID",
        help="with --wait: until it is live at this manifest (an id or a prefix of one)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --wait: give up after this long, exit code 124 (default: no limit)",
    )
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--keys", help=argparse.SUPPRESS)
    p.set_defaults(run=status)


def agent_config(context: Context, args: argparse.Namespace) -> AgentConfig:
    from aetherfs.agent.config import build_config, load_toml

    file = load_toml(Path(args.config)) if getattr(args, "config", None) else {}
    flags = {
        "store": args.store,
        "keys": args.keys,
        "data_root": args.data_root,
        "subscribe": getattr(args, "subscribe", []),
        "cache_dir": getattr(args, "cache_dir", None),
        "cache_limit": getattr(args, "cache_limit", None),
        "keep_versions": getattr(args, "keep_versions", None),
        "cache_linger": getattr(args, "cache_linger", None),
        "poll_interval": getattr(args, "poll_interval", None),
        "retry_max": getattr(args, "retry_max", None),
        "fetch_workers": getattr(args, "fetch_workers", None),
        "store_rate": getattr(args, "store_rate", None),
        "wait_for_lock": getattr(args, "wait_for_lock", None),
        "read_only": getattr(args, "read_only", None),
        "listen_http": getattr(args, "listen_http", None),
        "listen_socket": getattr(args, "listen_socket", None),
        "listen_grpc": getattr(args, "listen_grpc", None),
        "listen_grpc_socket": getattr(args, "listen_grpc_socket", None),
        "join_token": getattr(args, "join_token", None),
        "join_token_file": getattr(args, "join_token_file", None),
        "agent_name": getattr(args, "agent_name", None),
        "revocation_interval": getattr(args, "revocation_interval", None),
        "no_peers": getattr(args, "no_peers", None),
        "peer_listen": getattr(args, "peer_listen", None),
        "peer_announce": getattr(args, "peer_announce", None),
        "peer": getattr(args, "peer", []),
        "no_mdns": getattr(args, "no_mdns", None),
        "peer_upload_rate": getattr(args, "peer_upload_rate", None),
        "peer_download_rate": getattr(args, "peer_download_rate", None),
        "priority": getattr(args, "priority", []),
    }
    s = context.settings
    env = {
        k: v
        for k, v in {
            "AETHERFS_KEYS": str(s.keys_path) if s.keys_path else None,
            "AETHERFS_S3_ENDPOINT": s.s3_endpoint,
            "AETHERFS_S3_REGION": s.s3_region,
            "AETHERFS_JOIN_TOKEN": os.environ.get("AETHERFS_JOIN_TOKEN"),
        }.items()
        if v
    }
    return build_config(file, flags, env, s.keys_dir, s.store_url)


def _single(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def start_membership(config: AgentConfig, context: Context) -> CertificateMembership | None:
    """The agent's identity (made on first start) and, through a hub, its enrolment in the
    fleet: kept from an earlier start, or made now with the join token (blocking, once)."""
    from aetherfs.agent.identity import load_identity
    from aetherfs.agent.log import Logger
    from aetherfs.agent.membership import HubAddress, open_membership

    identity = load_identity(config.state_dir)
    if not isinstance(context, HubContext):
        return None  # a keyring's fleet secret admits it; nothing to enrol
    hub = HubAddress(context.hub_url, context.ca_file)
    return open_membership(config, identity, hub, Logger(), time.time())


class AgentFailed(AetherError):
    """The daemon could not start or keep running (a port taken, a socket path unusable)."""


def agent(context: Context, args: argparse.Namespace) -> int:
    import trio

    config = agent_config(context, args)
    # Through a hub (--hub / AETHERFS_HUB), the context's repository is the hub's client:
    # tags, manifests and blocks come from it, verified as from a store.
    hub = isinstance(context, HubContext)
    if hub:
        config = dataclasses.replace(config, store_url=context.hub_url)  # type: ignore[attr-defined]
    elif config.join_token:
        raise InvalidInput("--join-token enrols through a hub: give --hub URL too")
    membership = None if config.read_only else start_membership(config, context)
    if membership is not None and getattr(context, "token", None) is None:
        # Enrolled with no `aetherfs login`: the agent's own API token works the hub.
        context = dataclasses.replace(context, token=membership.enrolment.token)  # type: ignore[call-arg]
    try:
        from aetherfs.agent.daemon import run_agent
        from aetherfs.agent.watch import HubLink

        link = (
            HubLink(context.hub_url, context.token, context.ca_file)  # type: ignore[attr-defined]
            if hub
            else None
        )

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                if membership is not None:  # renewal and revocation lists, beside the daemon
                    await nursery.start(membership.run)
                await run_agent(
                    config,
                    None,
                    context.repository if hub else None,
                    args.report_interval,
                    link,
                    membership,
                )
                nursery.cancel_scope.cancel()

        trio.run(run)
    except BaseExceptionGroup as group:
        # Task failures arrive grouped; one AetherError or OSError is said plainly.
        inner = _single(group)
        if isinstance(inner, AetherError):
            raise inner from None
        if isinstance(inner, OSError):
            raise AgentFailed(
                f"the agent stopped: {inner} (check the --listen-* addresses and paths)"
            ) from None
        raise
    return 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the agent's REST API answers: a loopback URL, or a Unix socket."""

    base_url: str
    socket: Path | None
    where: str  # for messages

    def client(self) -> httpx.Client:
        import httpx

        transport = httpx.HTTPTransport(uds=str(self.socket)) if self.socket else None
        return httpx.Client(transport=transport, base_url=self.base_url, timeout=10)

    def async_client(self) -> httpx.AsyncClient:
        import httpx

        transport = httpx.AsyncHTTPTransport(uds=str(self.socket)) if self.socket else None
        return httpx.AsyncClient(transport=transport, base_url=self.base_url, timeout=10)


def _endpoint(context: Context, args: argparse.Namespace) -> Endpoint:
    if args.url:
        return Endpoint(args.url, None, args.url)
    if args.socket:
        sock = Path(args.socket)
    else:
        if not (args.config or args.data_root):
            raise InvalidInput(
                "say where the agent is: --data-root DIR, --config FILE, --socket PATH or --url URL"
            )
        args.subscribe = []
        config = agent_config(context, args)
        if config.listen.socket is None:
            url = f"http://{config.listen.http}"
            return Endpoint(url, None, url)
        sock = config.listen.socket
    return Endpoint("http://agent", sock, str(sock))


def status(context: Context, args: argparse.Namespace) -> int:
    import httpx

    if args.wait is None and (args.manifest or args.timeout is not None):
        raise InvalidInput("--manifest and --timeout go with --wait NAME:CHANNEL")
    endpoint = _endpoint(context, args)
    if args.wait is not None:
        return wait(endpoint, args)
    try:
        with endpoint.client() as client:
            response = client.get("/v1/status")
            response.raise_for_status()
            snap: dict[str, Any] = response.json()
    except (httpx.HTTPError, OSError) as exc:
        raise StoreUnavailable(
            f"no agent answers at {endpoint.where} ({exc}); is `aetherfs agent` running?"
        ) from None
    if args.json:
        print_json(snap)
    else:
        print(render_status(snap))
    return 0


def wait(endpoint: Endpoint, args: argparse.Namespace) -> int:
    """`status --wait`: one process following the agent's watch stream until live."""
    import trio

    from aetherfs.agent.client import wait_live
    from aetherfs.agent.config import Subscription

    ref = str(Subscription.parse(args.wait))
    if args.timeout is not None and args.timeout < 0:
        raise InvalidInput(f"--timeout must be 0 or more seconds, not {args.timeout:g}")
    said: list[str] = []

    def report(channel: dict[str, Any]) -> None:
        line = describe_wait(channel, args.manifest)
        if not said or said[-1] != line:
            said.append(line)
            print(line, file=sys.stderr, flush=True)

    channel = trio.run(
        wait_live, endpoint.async_client, endpoint.where, ref, args.manifest, args.timeout, report
    )
    if args.json:
        print_json(channel)
    else:
        live = channel["live"]
        print(f"{ref} is live at {live['manifest']} ({live['path']})")
    return 0


def describe_wait(channel: dict[str, Any], manifest: str | None) -> str:
    """One line of progress for `status --wait`."""
    ref, state, live = channel["subscription"], channel["state"], channel["live"]
    line = f"{ref}: {state}"
    p = channel["progress"]
    if p:
        line += (
            f" {p['manifest'][:12]}: {p['fraction'] * 100:.0f}% of "
            f"{human_bytes(p['bytes_total'])} ({p['blocks_missing']} blocks to fetch)"
        )
    line += f", live at {live['manifest'][:12]}" if live else ", nothing live yet"
    if manifest and not p:
        line += f", waiting for {manifest[:12]}"
    if channel["last_error"] and state == "retrying":
        line += f"; last error: {channel['last_error']}"
    return line


def _ago(t: float | None) -> str:
    if not t:
        return "-"
    seconds = max(0, time.time() - t)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return when(t)


def render_status(snap: dict[str, Any]) -> str:
    a = snap["agent"]
    lines = [
        f"agent {a['version']}  pid {a['pid']}  up {a['uptime']:.0f}s  data root {a['data_root']}",
        f"store {a['store']}"
        + ("  (unreachable: retrying)" if a.get("store_reachable") is False else ""),
        "",
    ]
    rows = []
    for ch in snap["subscriptions"]:
        live = ch["live"]
        p = ch["progress"]
        progress = "-"
        if p:
            progress = (
                f"{p['fraction'] * 100:.0f}% of {human_bytes(p['bytes_total'])}"
                f" ({p['blocks_missing']} blocks to fetch, {p['files_linked']} files linked)"
            )
        state = ch["state"]
        if ch["retries"]:
            state += (
                f" (x{ch['retries']}, next {max(0, (ch['next_retry'] or 0) - time.time()):.0f}s)"
            )
        rows.append(
            [
                ch["subscription"],
                state,
                live["manifest"][:12] if live else "(none)",
                _ago(live["since"]) if live else "-",
                progress,
            ]
        )
    if rows:
        lines.append(table(rows, ["SUBSCRIPTION", "STATE", "LIVE", "SINCE", "DOWNLOAD"]))
    else:
        lines.append("no subscriptions")
    for ch in snap["subscriptions"]:
        if ch["live"]:
            lines.append(f"  {ch['subscription']} -> {ch['live']['path']}")
    for ch in snap["subscriptions"]:
        if ch.get("files_repaired"):
            lines.append(
                f"  {ch['subscription']}: {ch['files_repaired']} altered files of retained "
                "versions repaired before they went live again"
            )
    for ch in snap["subscriptions"]:
        if ch.get("waiting"):
            lines.append(f"  {ch['subscription']}: {ch['waiting']}")
        if ch["last_error"]:
            lines.append(f"  {ch['subscription']} error: {ch['last_error']}")
    src = snap["bytes_by_source"]
    lines += [
        "",
        "bytes by source: "
        + ", ".join(
            f"{name} {human_bytes(src.get(name, 0))}" for name in ("cache", "peers", "store")
        )
        + (f", local {human_bytes(src['local'])}" if src.get("local") else ""),
    ]
    c = snap["cache"]
    lines.append(
        f"cache: {human_bytes(c['bytes'])} of {human_bytes(c['limit'])} ({c['blocks']} blocks), "
        f"{human_bytes(c['evicted_bytes'])} evicted, {c['corrupt_dropped']} altered blocks dropped"
    )
    served = snap.get("served") or {}
    lines.append(
        f"disk: trees {human_bytes(snap.get('trees', {}).get('bytes', 0))}, cache "
        f"{human_bytes(c.get('disk_bytes', 0))}; served to peers: "
        f"{served.get('cache_blocks', 0)} blocks from the cache, "
        f"{served.get('tree_blocks', 0)} sealed again from trees, "
        f"{served.get('altered', 0) + served.get('mismatched', 0)} refused"
    )
    lines += _render_peers(snap)
    lines.append(f"versions on disk: {len(snap['versions'])}")
    reads = sorted(snap.get("file_reads", []), key=lambda r: -r["reads"])[:5]
    if reads:
        lines.append(
            "most read over HTTP: "
            + ", ".join(f"{r['ref']}/{r['path']} ({r['reads']})" for r in reads)
        )
    if snap["last_error"]:
        lines.append(f"last error ({_ago(snap['last_error_time'])}): {snap['last_error']}")
    return "\n".join(lines)


def _render_peers(snap: dict[str, Any]) -> list[str]:
    """Peer exchange: on or why not, each peer, and each version's bytes by source."""
    px = snap.get("peer_exchange") or {}
    if not px.get("enabled"):
        return [f"peers: off ({px.get('problem') or 'off'})"]
    lines = [
        f"peers: agent {px['agent_id']} fleet {px['fleet']} at {px['address']}:{px['port']}"
        f"{'' if px['mdns'] else ' (no mDNS)'}, {len(snap['peers'])} known"
    ]
    caps = px.get("bandwidth") or {}
    if any(caps.values()):
        lines.append(
            "  caps: "
            + ", ".join(
                f"{what.replace('_', ' ')} {human_bytes(rate)}/s"
                for what, rate in caps.items()
                if rate
            )
        )
    rows = [
        [
            p["id"],
            p["address"],
            p["state"],
            human_bytes(p["bytes_sent"]),
            human_bytes(p["bytes_received"]),
            str(p["errors"]) + (f" ({p['last_error']})" if p["last_error"] else ""),
            _ago(p["last_seen"]),
        ]
        for p in snap["peers"]
    ]
    if rows:
        lines.append(
            table(rows, ["PEER", "ADDRESS", "STATE", "SENT", "RECEIVED", "ERRORS", "SEEN"])
        )
    for f in snap.get("fetches", []):
        b = f["bytes"]
        lines.append(
            f"  {f['manifest'][:12]}: {f['pieces'] - f['pieces_needed']}/{f['pieces']} pieces"
            f" (needs {human_bytes(f['bytes_needed'])}); cache {human_bytes(b['cache'])}, peers "
            f"{human_bytes(b['peers'])}, store {human_bytes(b['store'])}"
            f" in {f['store_reads']} reads"
            + (f", priority {f['priority']}" if f.get("priority") else "")
        )
    for r in px.get("refused", [])[-3:]:
        lines.append(f"  refused {r['address']}: {r['reason']}")
    return lines
