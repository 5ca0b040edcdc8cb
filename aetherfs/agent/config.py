"""Agent configuration: TOML file and flags, parsed once into frozen values.

Every other module of the agent takes an `AgentConfig`; nothing below here reads the
environment or a file of settings.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherfs.config import parse_size
from aetherfs.core.names import Ref, check_agent_id, check_dataset_name, check_tag
from aetherfs.errors import InvalidInput
from aetherfs.ops.materialise import DEFAULT_WORKERS

DEFAULT_HTTP = "127.0.0.1:7420"
DEFAULT_GRPC = "127.0.0.1:7421"
DEFAULT_PEER_LISTEN = "0.0.0.0:7422"


@dataclass(frozen=True, slots=True)
class Subscription:
    dataset: str
    channel: str

    @classmethod
    def parse(cls, text: str) -> Subscription:
        try:
            ref = Ref.parse(text, default_tag="latest")
        except InvalidInput as exc:
            raise InvalidInput(f"subscription {text!r}: {exc}") from None
        return cls(check_dataset_name(ref.dataset), check_tag(ref.tag))

    def __str__(self) -> str:
        return f"{self.dataset}:{self.channel}"


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the status API answers. Empty strings switch an endpoint off."""

    http: str  # host:port on loopback, REST + /metrics + files
    socket: Path | None  # Unix socket, REST
    grpc: str  # host:port on loopback, gRPC AgentService
    grpc_socket: Path | None  # Unix socket, gRPC AgentService


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """Peer exchange on the LAN (docs/peers.md): on unless `enabled` is false (--no-peers)."""

    enabled: bool = True
    listen_host: str = "0.0.0.0"  # where the peer protocol listens (TCP)
    listen_port: int = 7422
    announce: str | None = None  # the IPv4 address told to peers (default: found at start)
    static: tuple[str, ...] = ()  # ADDRESS:PORT of peers to dial whatever discovery says
    mdns: bool = True  # announce and browse with mDNS (static peers work without it)
    upload_rate: int = 0  # bytes/s cap on blocks sent to peers, 0 = none
    download_rate: int = 0  # bytes/s cap on blocks received from peers, 0 = none


@dataclass(frozen=True, slots=True)
class AgentConfig:
    store_url: str
    s3_endpoint: str | None
    s3_region: str | None
    keys_path: Path | None
    keys_dir: Path
    data_root: Path
    cache_dir: Path
    cache_limit: int
    subscriptions: tuple[Subscription, ...]
    listen: Listen
    keep_versions: int  # old versions kept per dataset beyond the live ones
    poll_interval: float  # seconds between tag checks
    retry_max: float  # longest wait between retries after an error
    fetch_workers: int  # blocks fetched at once
    store_rate: int  # bytes/s cap on store reads, 0 = none
    wait_for_lock: bool  # wait for another agent to release the data root instead of failing
    read_only: bool  # a shared data root another agent writes: follow its links, fetch nothing
    # Fleet membership through a hub (aetherfs/agent/membership.py, docs/peers.md):
    join_token: str | None = field(default=None, repr=False)  # spent once, at first start
    agent_name: str | None = None  # the name enrolled under (default: the agent id)
    revocation_interval: float = 300.0  # seconds between fetches of the revocation list
    peers: PeerSettings = field(default_factory=PeerSettings)
    # Which subscription's versions the planner serves first when several download at once
    # (higher first; unnamed ones are 0): pairs, so the config stays hashable.
    priorities: tuple[tuple[Subscription, int], ...] = ()

    def priority(self, sub: Subscription) -> int:
        return next((p for s, p in self.priorities if s == sub), 0)

    # Seconds a live version's blocks stay in the cache after a peer last read one there;
    # then the tree serves them, sealed again (agent/tree_blocks.py): about one copy on disk.
    cache_linger: float = 60.0

    @property
    def state_dir(self) -> Path:
        return self.data_root / ".agent"


def _listen_path(value: Any, default: Path) -> Path | None:
    if value is None:
        return default
    if value == "":
        return None
    return Path(str(value)).expanduser()


def _host_port(value: str, what: str) -> str:
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidInput(f"{what} must be HOST:PORT (e.g. 127.0.0.1:7420), not {value!r}")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise InvalidInput(
            f"{what} {value!r} is not a loopback address: the status API is local only"
        )
    return value


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InvalidInput(f"no agent config at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}") from None


def build_config(
    file: Mapping[str, Any],
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    keys_dir: Path,
    default_store: str,
) -> AgentConfig:
    """Merge TOML values with flags (flags win) and the few environment defaults."""

    def pick(name: str, default: Any = None) -> Any:
        value = flags.get(name)
        if value is not None and value != [] and value != ():
            return value
        return file.get(name, default)

    known = {
        "store",
        "keys",
        "data_root",
        "cache_dir",
        "cache_limit",
        "subscribe",
        "listen",
        "keep_versions",
        "cache_linger",
        "poll_interval",
        "retry_max",
        "fetch_workers",
        "store_rate",
        "wait_for_lock",
        "read_only",
        "s3_endpoint",
        "s3_region",
        "join_token_file",
        "agent_name",
        "revocation_interval",
        "peers",
        "priority",
    }
    unknown = sorted(set(file) - known)
    if unknown:
        raise InvalidInput(f"unknown agent settings: {', '.join(unknown)}")

    data_root_value = pick("data_root")
    if not data_root_value:
        raise InvalidInput("the agent needs a data root: --data-root DIR or data_root = in TOML")
    data_root = Path(str(data_root_value)).expanduser().absolute()
    subs_raw: Sequence[str] = pick("subscribe", [])
    if isinstance(subs_raw, str):
        subs_raw = [subs_raw]
    subs = tuple(dict.fromkeys(Subscription.parse(s) for s in subs_raw))
    listen_file: Mapping[str, Any] = file.get("listen", {})
    state_dir = data_root / ".agent"
    read_only = bool(pick("read_only", False))

    def listen_value(name: str, default: Any) -> Any:
        flag = flags.get(f"listen_{name}")
        if flag is not None:
            return flag
        return listen_file.get(name, default)

    listen = Listen(
        http=_host_port(str(listen_value("http", DEFAULT_HTTP)), "listen.http"),
        # A reader shares the data root with a writer: its sockets are off unless named.
        socket=_listen_path(
            listen_value("socket", "" if read_only else None), state_dir / "agent.sock"
        ),
        grpc=_host_port(str(listen_value("grpc", DEFAULT_GRPC)), "listen.grpc"),
        grpc_socket=_listen_path(
            listen_value("grpc_socket", "" if read_only else None), state_dir / "grpc.sock"
        ),
    )
    try:
        cache_limit = parse_size(str(pick("cache_limit", "4G")))
        store_rate = parse_size(str(pick("store_rate", "0")))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    keep = int(pick("keep_versions", 1))
    poll = float(pick("poll_interval", 10.0))
    workers = int(pick("fetch_workers", DEFAULT_WORKERS))
    if keep < 0 or poll <= 0 or workers < 1:
        raise InvalidInput("keep_versions >= 0, poll_interval > 0 and fetch_workers >= 1, please")
    keys = pick("keys") or env.get("AETHERFS_KEYS")
    cache_dir = pick("cache_dir")
    join_token = _join_token(pick("join_token"), pick("join_token_file"), env)
    if join_token and read_only:
        raise InvalidInput("a --read-only agent does not join a fleet: drop --join-token")
    revocation_interval = float(pick("revocation_interval", 300.0))
    if revocation_interval <= 0:
        raise InvalidInput("revocation_interval must be more than 0 seconds")
    agent_name = pick("agent_name")
    cache_linger = float(pick("cache_linger", 60.0))
    if cache_linger < 0:
        raise InvalidInput("cache_linger must be 0 seconds or more")
    peers = _peer_settings(file.get("peers", {}), flags, read_only)
    priorities = _priorities(file.get("priority", {}), flags.get("priority") or [], subs)
    return AgentConfig(
        store_url=str(pick("store") or env.get("AETHERFS_STORE") or default_store),
        s3_endpoint=pick("s3_endpoint") or env.get("AETHERFS_S3_ENDPOINT") or None,
        s3_region=pick("s3_region") or env.get("AETHERFS_S3_REGION") or None,
        keys_path=Path(str(keys)).expanduser() if keys else None,
        keys_dir=keys_dir,
        data_root=data_root,
        cache_dir=Path(str(cache_dir)).expanduser() if cache_dir else state_dir / "cache",
        cache_limit=cache_limit,
        subscriptions=subs,
        listen=listen,
        keep_versions=keep,
        poll_interval=poll,
        retry_max=float(pick("retry_max", 60.0)),
        fetch_workers=workers,
        store_rate=store_rate,
        wait_for_lock=bool(pick("wait_for_lock", False)),
        read_only=read_only,
        join_token=join_token,
        agent_name=check_agent_id(str(agent_name)) if agent_name else None,
        revocation_interval=revocation_interval,
        peers=peers,
        priorities=priorities,
        cache_linger=cache_linger,
    )


def _priorities(
    file: Any, flags: Sequence[str], subs: Sequence[Subscription]
) -> tuple[tuple[Subscription, int], ...]:
    """`[priority]` in TOML (`"NAME:CHANNEL" = N`) and `--priority NAME:CHANNEL=N`, flags last
    so they win; every name must be a subscription (a typo would silently do nothing)."""
    if not isinstance(file, Mapping):
        raise InvalidInput('priority in the agent config is a table: [priority] "NAME:CHANNEL" = N')
    pairs: list[tuple[str, Any]] = list(file.items())
    for text in flags:
        name, sep, value = str(text).rpartition("=")
        if not sep:
            raise InvalidInput(
                f"--priority is NAME:CHANNEL=N (like team/geo:stable=10), not {text!r}"
            )
        pairs.append((name, value))
    found: dict[Subscription, int] = {}
    for name, value in pairs:
        sub = Subscription.parse(name)
        if sub not in subs:
            raise InvalidInput(f"priority for {sub}, which is not a subscription of this agent")
        try:
            found[sub] = int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"the priority of {sub} is a whole number, not {value!r}") from None
    return tuple(found.items())


def _rate(value: Any, what: str) -> int:
    try:
        return parse_size(str(value)) if value not in (None, "", 0) else 0
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc}") from None


PEER_KEYS = {"enabled", "listen", "announce", "static", "mdns", "upload_rate", "download_rate"}


def _peer_settings(file: Any, flags: Mapping[str, Any], read_only: bool) -> PeerSettings:
    """`[peers]` in TOML (enabled, listen, announce, static, mdns, upload_rate, download_rate)
    and the --peer* flags."""
    if not isinstance(file, Mapping):
        raise InvalidInput("peers in the agent config is a table: [peers]")
    unknown = sorted(set(file) - PEER_KEYS)
    if unknown:
        raise InvalidInput(f"unknown [peers] settings: {', '.join(unknown)}")
    enabled = bool(file.get("enabled", True)) and not flags.get("no_peers") and not read_only
    listen = str(flags.get("peer_listen") or file.get("listen", DEFAULT_PEER_LISTEN))
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidInput(f"peers.listen must be ADDRESS:PORT (like 0.0.0.0:7422), not {listen!r}")
    announce = flags.get("peer_announce") or file.get("announce")
    static_raw = list(flags.get("peer") or []) or file.get("static", [])
    if isinstance(static_raw, str):
        static_raw = [static_raw]
    for text in static_raw:
        _, sep, p = str(text).rpartition(":")
        if not sep or not p.isdigit():
            raise InvalidInput(f"a static peer is ADDRESS:PORT (like 10.0.0.7:7422), not {text!r}")
    return PeerSettings(
        enabled=enabled,
        listen_host=host.strip("[]") or "0.0.0.0",
        listen_port=int(port),
        announce=str(announce) if announce else None,
        static=tuple(str(t) for t in static_raw),
        mdns=bool(file.get("mdns", True)) and not flags.get("no_mdns"),
        upload_rate=_rate(
            flags.get("peer_upload_rate") or file.get("upload_rate"), "peers.upload_rate"
        ),
        download_rate=_rate(
            flags.get("peer_download_rate") or file.get("download_rate"), "peers.download_rate"
        ),
    )


def _join_token(flag: Any, file: Any, env: Mapping[str, str]) -> str | None:
    """--join-token, else the first line of --join-token-file / join_token_file, else
    AETHERFS_JOIN_TOKEN."""
    if flag:
        return str(flag).strip()
    if file:
        path = Path(str(file)).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read the join token file {path}: {exc.strerror}") from None
        if not text:
            raise InvalidInput(f"the join token file {path} is empty")
        return text.splitlines()[0].strip()
    return env.get("AETHERFS_JOIN_TOKEN") or None
