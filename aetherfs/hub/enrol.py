"""Agent enrolment: a join token (made by an admin, single use, short-lived) is exchanged once
for a certificate over the agent's public key and an agent API token; before it expires the
agent renews it (its API token, and a signature by the certified key); admins revoke
certificates into a signed revocation list that agents fetch and gossip."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from aetherfs.core.fleet_certs import MAX_REVOCATIONS_SIZE
from aetherfs.errors import Conflict, Forbidden, InvalidInput, NotFound
from aetherfs.hub import layout
from aetherfs.hub.auth import BAD_CREDENTIALS, Principal, TokenRegistry, token_hash
from aetherfs.hub.errors import Unauthenticated
from aetherfs.hub.fleet import AgentCertificate, RevocationList, fleet_signing_key
from aetherfs.repository import StoreRepository
from aetherfs.repository.cas import compare_and_swap

JOIN_PREFIX = "afj_"
# What an agent signs with its identity key to renew (docs/peers.md, "Renewal"): the context
# keeps the signature from being taken for one over anything else.
RENEWAL_CONTEXT = b"aetherfs certificate renewal\0"


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
        issued = self._issue(agent, public_key)
        issued["token"] = TokenRegistry(self.store).create(agent, "agent")
        return issued

    def _issue(self, agent: str, public_key: bytes) -> dict[str, Any]:
        """Sign a new certificate (new serial, `cert_lifetime` from now) and record it."""
        now = time.time()
        cert = AgentCertificate(
            self.fleet_id, agent, public_key, secrets.token_hex(16), now, now + self.cert_lifetime
        )
        signed = cert.sign(self.fleet_key)
        record = {"agent": agent, "key": public_key.hex(), "issued": now, "expires": cert.expires}
        self.store.put(layout.cert_key(cert.serial), json.dumps(record).encode())
        return {
            "fleet": self.fleet_id,
            "fleet_public_key": self.fleet_public.hex(),
            "certificate": base64.b64encode(signed).decode(),
            "serial": cert.serial,
            "expires": cert.expires,
        }

    def renew(self, agent: str, certificate: str, signature: str) -> dict[str, Any]:
        """A new certificate for the same agent and key, for `agent` (the caller's API token
        names it) presenting its certificate and a signature over it by the certified key.

        The certificate must be this fleet's, issued here, unexpired and not revoked.
        """
        try:
            signed = base64.b64decode(certificate, validate=True)
            proof = bytes.fromhex(signature)
        except ValueError:
            raise InvalidInput("certificate must be base64 and signature hex") from None
        revoked, _ = self.revocations()
        # IntegrityError (not this fleet's key) or Forbidden (expired, revoked), in words.
        cert = AgentCertificate.verify(signed, self.fleet_public, time.time(), revoked.serials)
        if cert.fleet != self.fleet_id:
            raise Forbidden(f"the certificate is of fleet {cert.fleet}, not of this hub's")
        if cert.agent != agent:
            raise Forbidden(
                f"not allowed: the certificate is agent {cert.agent}'s; an agent renews its own"
            )
        if not self.store.exists(layout.cert_key(cert.serial)):
            raise Forbidden(f"the certificate {cert.serial} was not issued by this fleet's hubs")
        try:
            VerifyKey(cert.key).verify(RENEWAL_CONTEXT + signed, proof)
        except (BadSignatureError, ValueError, TypeError):
            raise Forbidden(
                "the renewal is not signed by the certified key: sign "
                "`aetherfs certificate renewal\\0` + certificate with the agent's identity key"
            ) from None
        issued = self._issue(cert.agent, cert.key)
        issued["previous"] = cert.serial
        return issued

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
            signed = updated.sign(self.fleet_key)
            if len(signed) > MAX_REVOCATIONS_SIZE:
                # Peers pass the list in one record: a larger one could not reach them.
                raise Conflict(
                    f"the revocation list would be {len(signed):,} bytes, over the "
                    f"{MAX_REVOCATIONS_SIZE:,} bytes peers carry: no more certificates can "
                    "be revoked"
                )
            return signed, updated

        busy = "the revocation list is being changed by many at once; retry"
        return compare_and_swap(self.store, layout.REVOCATIONS, add, busy)
