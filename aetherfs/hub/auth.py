"""Who is calling: API tokens (random, stored hashed in the store) and OIDC bearer tokens.

An API token is `afs_` + 43 url-safe characters (32 random bytes); the store keeps only its
SHA-256, so reading the bucket does not yield a usable token. An OIDC token is a JWT verified
against the issuer's discovery document and JWKS (signature, issuer, audience, expiry), its
groups claim mapped to hub groups.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import trio

from aetherfs.errors import Conflict, InvalidInput, NotFound, StoreUnavailable, echo
from aetherfs.hub import layout
from aetherfs.hub.config import OidcConfig
from aetherfs.hub.errors import Unauthenticated
from aetherfs.store.base import Store

TOKEN_PREFIX = "afs_"
_NAME = re.compile(r"[A-Za-z0-9@._-]{1,128}")
KINDS = ("user", "agent")

# One message for every bad credential: which check failed is nobody's business but ours.
BAD_CREDENTIALS = "the credentials are not valid (unknown, revoked, expired, or not for this hub)"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user or an agent, with its groups."""

    kind: str  # "user" or "agent"
    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False  # hub-wide admin: every role on every dataset
    via: str = "token"  # "token" or "oidc"

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.name}"

    def subjects(self) -> frozenset[str]:
        """Every ACL subject this principal answers to."""
        return frozenset({self.subject, *(f"group:{g}" for g in self.groups)})

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "name": self.name,
            "groups": sorted(self.groups),
            "admin": self.admin,
            "via": self.via,
        }


def check_name(name: str, what: str = "name") -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"bad {what} {echo(name)}: 1 to 128 letters, digits, '@', '.', '_' or '-'"
        )
    return name


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    kind: str
    admin: bool
    groups: tuple[str, ...]
    created: float
    hash: str

    def principal(self) -> Principal:
        return Principal(self.kind, self.name, frozenset(self.groups), self.admin, "token")


class TokenRegistry:
    """API tokens on the store: create, look up, list, revoke. Blocking (store calls)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self, name: str, kind: str = "user", admin: bool = False, groups: Sequence[str] = ()
    ) -> str:
        check_name(name)
        if kind not in KINDS:
            raise InvalidInput(f"a token is for a user or an agent, not {echo(kind)}")
        for group in groups:
            check_name(group, "group")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = {
            "name": name,
            "kind": kind,
            "admin": admin,
            "groups": sorted(set(groups)),
            "created": time.time(),
        }
        if not self.store.put_if_absent(
            layout.token_key(token_hash(secret)), json.dumps(doc).encode()
        ):
            raise Conflict("token collision; run the command again")  # 2^-256: never
        return secret

    def lookup(self, secret: str) -> TokenInfo | None:
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        digest = token_hash(secret)
        try:
            raw = self.store.get(layout.token_key(digest))
        except NotFound:
            return None
        return _token_info(raw, digest)

    def list(self) -> list[TokenInfo]:
        found = []
        for key in self.store.list(layout.TOKENS):
            digest = key[len(layout.TOKENS) :].removesuffix(".json")
            try:
                found.append(_token_info(self.store.get(key), digest))
            except NotFound:
                continue  # revoked meanwhile
        return sorted(found, key=lambda t: (t.name, t.created))

    def revoke(self, name: str) -> int:
        """Delete every token with this name; how many there were."""
        revoked = 0
        for info in self.list():
            if info.name == name:
                self.store.delete(layout.token_key(info.hash))
                revoked += 1
        if not revoked:
            raise NotFound(f"no token named {echo(name)} (see `aetherfs hub token list`)")
        return revoked


def _token_info(raw: bytes, digest: str) -> TokenInfo:
    doc = json.loads(raw)
    return TokenInfo(
        name=str(doc["name"]),
        kind=str(doc.get("kind", "user")),
        admin=bool(doc.get("admin", False)),
        groups=tuple(str(g) for g in doc.get("groups", [])),
        created=float(doc.get("created", 0)),
        hash=digest,
    )


@dataclass(slots=True)
class _Jwks:
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> PyJWK
    fetched: float = 0.0


class OidcVerifier:
    """Verify JWTs from one issuer: discovery document, then JWKS, refreshed on unknown kids."""

    REFRESH_AFTER = 300.0  # re-read the JWKS at most this often unless a kid is unknown

    def __init__(self, config: OidcConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self._jwks_uri: str | None = None
        self._jwks = _Jwks()
        self._lock = trio.Lock()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url, timeout=10)
            response.raise_for_status()
            doc = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise StoreUnavailable(
                f"the identity provider cannot be reached ({url}): {type(exc).__name__}"
            ) from None
        if not isinstance(doc, dict):
            raise StoreUnavailable(f"the identity provider sent a malformed document at {url}")
        return doc

    async def _discover(self) -> str:
        if self._jwks_uri is None:
            issuer = self.config.issuer.rstrip("/")
            doc = await self._get_json(f"{issuer}/.well-known/openid-configuration")
            if str(doc.get("issuer", "")).rstrip("/") != issuer or "jwks_uri" not in doc:
                raise StoreUnavailable(
                    f"the discovery document of {issuer} names another issuer or no jwks_uri"
                )
            self._jwks_uri = str(doc["jwks_uri"])
        return self._jwks_uri

    async def _key(self, kid: str) -> Any:
        async with self._lock:
            now = time.monotonic()
            stale = now - self._jwks.fetched > self.REFRESH_AFTER
            missing = (
                kid not in self._jwks.keys
                and now - self._jwks.fetched > self.config.jwks_min_refetch
            )
            if stale or missing:
                doc = await self._get_json(await self._discover())
                keys = {}
                for entry in doc.get("keys", []):
                    try:
                        key = jwt.PyJWK.from_dict(entry)
                    except jwt.PyJWTError:
                        continue  # a key type we do not use
                    if key.key_id:
                        keys[key.key_id] = key
                self._jwks = _Jwks(keys, now)
            return self._jwks.keys.get(kid)

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated(BAD_CREDENTIALS) from None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in self.config.algorithms:
            raise Unauthenticated(BAD_CREDENTIALS)
        key = await self._key(kid)
        if key is None:
            raise Unauthenticated(BAD_CREDENTIALS)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            raise Unauthenticated(BAD_CREDENTIALS) from None
        return self.principal_from_claims(claims)

    def principal_from_claims(self, claims: dict[str, Any]) -> Principal:
        name = claims.get(self.config.username_claim)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise Unauthenticated(BAD_CREDENTIALS)
        raw_groups = claims.get(self.config.groups_claim, [])
        if isinstance(raw_groups, str):
            raw_groups = [raw_groups]
        mapping = dict(self.config.group_map)
        groups = {
            mapping.get(g, g)
            for g in raw_groups
            if isinstance(g, str) and _NAME.fullmatch(mapping.get(g, g))
        }
        admin = bool(groups & set(self.config.admin_groups))
        return Principal("user", name, frozenset(groups), admin, "oidc")


class Authenticator:
    """Turn an Authorization header (or the web pages' cookie) into a Principal."""

    def __init__(
        self,
        tokens: TokenRegistry,
        oidc: OidcVerifier | None,
        limiter: trio.CapacityLimiter,
        cache_seconds: float = 2.0,
    ) -> None:
        self.tokens = tokens
        self.oidc = oidc
        self.limiter = limiter
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}

    async def _lookup(self, secret: str) -> TokenInfo | None:
        now = time.monotonic()
        hit = self._cache.get(secret)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        info = await trio.to_thread.run_sync(self.tokens.lookup, secret, limiter=self.limiter)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[secret] = (now, info)
        return info

    async def authenticate(self, credential: str | None) -> Principal | None:
        """None when no credential was given; Unauthenticated when a bad one was."""
        if credential is None:
            return None
        if credential.startswith(TOKEN_PREFIX):
            info = await self._lookup(credential)
            if info is None:
                raise Unauthenticated(BAD_CREDENTIALS)
            return info.principal()
        if self.oidc is None:
            raise Unauthenticated(BAD_CREDENTIALS)
        return await self.oidc.verify(credential)


def bearer(header: str | None) -> str | None:
    """The credential in `Authorization: Bearer X`; Unauthenticated if the header is malformed."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("use `Authorization: Bearer TOKEN`")
    return value.strip()
