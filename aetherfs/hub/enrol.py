"""Agent enrolment: a join token (made by an admin, single use, short-lived) is exchanged once
for a certificate over the agent's public key and an agent API token; admins revoke
certificates into a signed revocation list that agents fetch and gossip."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from typing import Any

from aetherfs.errors import Conflict, InvalidInput, NotFound
from aetherfs.hub import layout
from aetherfs.hub.auth import BAD_CREDENTIALS, Principal, TokenRegistry, token_hash
from aetherfs.hub.errors import Unauthenticated
from aetherfs.hub.fleet import AgentCertificate, RevocationList, fleet_signing_key
from aetherfs.repository import StoreRepository
from aetherfs.repository.cas import compare_and_swap

JOIN_PREFIX = "afj_"


class Enrolment:
    def __init__(self, repo: StoreRepository, cert_lifetime: float = 30 * 86400) -> None:
        self.repo = repo
        self.store = repo.store
        self.fleet_key = fleet_signing_key(repo.keyring)
        self.fleet_id = repo.keyring.store_id
        self.cert_lifetime = cert_lifetime

    @property
    def fleet_public(self) -> bytes:
        return bytes(self.fleet_key.verify_key)

    def create_join_token(self, by: Principal | None, ttl: float = 3600.0) -> dict[str, Any]:
        if not 0 < ttl <= 30 * 86400:
            raise InvalidInput("a join token lives between 1 second and 30 days")
        secret = JOIN_PREFIX + secrets.token_urlsafe(32)
        expires = time.time() + ttl
        doc = {"created": time.time(), "expires": expires, "by": by.subject if by else "cli"}
        self.store.put_if_absent(
            layout.join_token_key(token_hash(secret)), json.dumps(doc).encode()
        )
        return {"join_token": secret, "expires": expires}

    def _spend(self, secret: str) -> None:
        """Use the join token up, exactly once, by compare-and-swap."""
        if not secret.startswith(JOIN_PREFIX):
            raise Unauthenticated(BAD_CREDENTIALS)
        key = layout.join_token_key(token_hash(secret))
        try:
            current = self.store.get_versioned(key)
        except NotFound:
            raise Unauthenticated(BAD_CREDENTIALS) from None
        doc = json.loads(current.data)
        if doc.get("used") or time.time() >= float(doc["expires"]):
            raise Unauthenticated(BAD_CREDENTIALS)
        doc["used"] = time.time()
        try:
            self.store.put_if_version(key, json.dumps(doc).encode(), current.version)
        except Conflict:
            raise Unauthenticated(BAD_CREDENTIALS) from None  # someone else spent it

    def enrol(self, join_token: str, agent: str, public_key: bytes) -> dict[str, Any]:
        layout.check_agent_id(agent)
        if len(public_key) != 32:
            raise InvalidInput("public_key must be a 32-byte Ed25519 key (64 hex digits)")
        self._spend(join_token)
        now = time.time()
        cert = AgentCertificate(
            self.fleet_id, agent, public_key, secrets.token_hex(16), now, now + self.cert_lifetime
        )
        signed = cert.sign(self.fleet_key)
        record = {"agent": agent, "key": public_key.hex(), "issued": now, "expires": cert.expires}
        self.store.put(layout.cert_key(cert.serial), json.dumps(record).encode())
        api_token = TokenRegistry(self.store).create(agent, "agent")
        return {
            "fleet": self.fleet_id,
            "fleet_public_key": self.fleet_public.hex(),
            "certificate": base64.b64encode(signed).decode(),
            "serial": cert.serial,
            "expires": cert.expires,
            "token": api_token,
        }

    def revocations(self) -> tuple[RevocationList, bytes]:
        try:
            signed = self.store.get(layout.REVOCATIONS)
        except NotFound:
            empty = RevocationList(self.fleet_id, 0, 0.0, frozenset())
            return empty, empty.sign(self.fleet_key)
        return RevocationList.verify(signed, self.fleet_public), signed

    def revoke(self, serial: str | None = None, agent: str | None = None) -> RevocationList:
        """Revoke one certificate, or every certificate of an agent (and its API tokens)."""
        serials: set[str] = set()
        if serial:
            if not self.store.exists(layout.cert_key(serial)):
                raise NotFound(f"no certificate with serial {serial}")
            serials.add(serial)
        if agent:
            layout.check_agent_id(agent)
            for key in self.store.list(layout.CERTS):
                if json.loads(self.store.get(key)).get("agent") == agent:
                    serials.add(key[len(layout.CERTS) :].removesuffix(".json"))
            with contextlib.suppress(NotFound):  # an agent without tokens left
                TokenRegistry(self.store).revoke(agent)
        if not serials:
            raise NotFound("nothing to revoke: give a known serial or an enrolled agent")

        def add(raw: bytes | None) -> tuple[bytes, RevocationList]:
            held = (
                RevocationList.verify(raw, self.fleet_public)
                if raw is not None
                else RevocationList(self.fleet_id, 0, 0.0, frozenset())
            )
            updated = RevocationList(
                self.fleet_id, held.seq + 1, time.time(), held.serials | serials
            )
            return updated.sign(self.fleet_key), updated

        busy = "the revocation list is being changed by many at once; retry"
        return compare_and_swap(self.store, layout.REVOCATIONS, add, busy)
