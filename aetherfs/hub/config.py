"""The hub's settings, parsed once at the edge (CLI flags) into frozen values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aetherfs.errors import InvalidInput, echo

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """An OpenID Connect issuer whose bearer tokens (JWTs) the hub accepts."""

    issuer: str
    audience: str
    username_claim: str = "sub"
    groups_claim: str = "groups"
    # Claim value -> hub group; values without an entry are kept as they are.
    group_map: tuple[tuple[str, str], ...] = ()
    # Hub groups whose members are hub-wide admins.
    admin_groups: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA")
    leeway: float = 30.0
    # Re-read the JWKS for an unknown key id at most this often (a flood of bad kids is cheap).
    jwks_min_refetch: float = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    json_body: int = 1 * MiB
    manifest: int = 64 * MiB
    pack: int = 80 * MiB  # packs are ~16 MiB (PACK_TARGET); one big block can exceed that
    status_report: int = 256 * 1024
    # The largest gRPC request message, for every call: packs and manifests are streamed in
    # pieces up to this size, so nothing the hub reads before it knows the caller is larger.
    grpc_message: int = 2 * MiB


@dataclass(frozen=True, slots=True)
class HubConfig:
    listen: str = "127.0.0.1:7070"
    grpc_listen: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False  # allow plain HTTP off loopback
    oidc: OidcConfig | None = None
    poll_interval: float = 1.0  # how often watched datasets' tags are re-read from the store
    token_cache_seconds: float = 2.0  # revocation takes effect within this
    acl_cache_seconds: float = 2.0  # and grants made through another hub within this
    # The file server's view of tag heads: moves through another hub are served within this.
    tag_cache_seconds: float = 1.0
    store_threads: int = 32
    grpc_threads: int = 64  # each open Watch stream holds one
    # Watch streams hold a gRPC thread each: at most this many in all (the other threads are
    # kept for unary calls), and at most `grpc_watch_per_principal` for one caller.
    grpc_watch_streams: int = 48
    grpc_watch_per_principal: int = 8
    # Uploads (PutPack, PutManifest) in flight at once; each holds up to a pack in memory.
    grpc_uploads: int = 4
    # How long an agent certificate the hub issues (enrolment or renewal) is valid; agents
    # renew between half and seven tenths of it (docs/peers.md). Tests issue short ones.
    cert_days: float = 30.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 < self.grpc_watch_streams < self.grpc_threads:
            raise InvalidInput("grpc_watch_streams must leave some of grpc_threads for unary calls")
        if self.grpc_watch_per_principal < 1 or self.grpc_uploads < 1:
            raise InvalidInput("grpc_watch_per_principal and grpc_uploads must be 1 or more")
        if not 0 < self.cert_days <= 3660:
            raise InvalidInput("--cert-days must be above 0 and at most 3660 (ten years)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInput("TLS needs both --tls-cert and --tls-key")
        for address in (self.listen, self.grpc_listen):
            if address is None:
                continue
            host, _ = split_host_port(address)
            if self.tls_cert is None and not self.insecure and not is_loopback(host):
                raise InvalidInput(
                    f"refusing plain HTTP/gRPC on {address}, which is not loopback: give "
                    "--tls-cert and --tls-key, or --insecure to force it"
                )


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise InvalidInput(f"expected HOST:PORT, got {echo(address)}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
