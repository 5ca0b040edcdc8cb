"""Agent certificates and revocation lists: pure checks, no keyring, no store.

A fleet key (kept by the hub, derived from its keyring: `aetherfs.hub.fleet`) signs each
enrolled agent's Ed25519 public key, so two agents authenticate each other with no hub in
reach. Certificates expire; a signed revocation list (its seq only grows) names the serials
no longer to be trusted, and agents gossip the newest list they have seen. Peers check both
here, with nothing but the fleet's public key and `now`.

Wire format (msgpack, then Ed25519 `signature || message` under the fleet key):
certificate `{v, kind: "agent-cert", fleet, agent, key, serial, issued, expires}`,
revocation list `{v, kind: "revocations", fleet, seq, time, serials}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from aetherfs.errors import Forbidden, IntegrityError

FORMAT = 1
SIGNATURE_SIZE = 64
# A signed revocation list travels between peers in one protocol record (256 KiB: see
# protocol/peer.md), so it may be no larger: about 7,500 serials of 16 bytes.
MAX_REVOCATIONS_SIZE = 256 * 1024


def _open(signed: bytes, fleet_public: bytes, kind: str) -> dict[str, Any]:
    try:
        message = VerifyKey(fleet_public).verify(signed)
    except (BadSignatureError, ValueError, TypeError):
        raise IntegrityError(f"the {kind} is not signed by this fleet's key") from None
    try:
        doc = msgpack.unpackb(message, raw=False)
    except Exception:
        raise IntegrityError(f"the {kind} is malformed") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT or doc.get("kind") != kind:
        raise IntegrityError(f"the {kind} is of an unknown format")
    return doc


@dataclass(frozen=True, slots=True)
class AgentCertificate:
    fleet: str
    agent: str
    key: bytes  # the agent's Ed25519 public key
    serial: str
    issued: float
    expires: float

    def sign(self, fleet_key: SigningKey) -> bytes:
        message = msgpack.packb(
            {
                "v": FORMAT,
                "kind": "agent-cert",
                "fleet": self.fleet,
                "agent": self.agent,
                "key": self.key,
                "serial": self.serial,
                "issued": self.issued,
                "expires": self.expires,
            },
            use_bin_type=True,
        )
        return bytes(fleet_key.sign(message))

    @classmethod
    def verify(
        cls,
        signed: bytes,
        fleet_public: bytes,
        now: float,
        revoked: frozenset[str] = frozenset(),
    ) -> AgentCertificate:
        """Check signature, expiry and revocation; raise IntegrityError or Forbidden."""
        doc = _open(signed, fleet_public, "agent-cert")
        try:
            cert = cls(
                str(doc["fleet"]),
                str(doc["agent"]),
                bytes(doc["key"]),
                str(doc["serial"]),
                float(doc["issued"]),
                float(doc["expires"]),
            )
        except (KeyError, TypeError, ValueError):
            raise IntegrityError("the agent certificate is malformed") from None
        if now >= cert.expires:
            raise Forbidden(f"the certificate of agent {cert.agent} has expired: enrol again")
        if now < cert.issued - 300:
            raise Forbidden(f"the certificate of agent {cert.agent} is not valid yet")
        if cert.serial in revoked:
            raise Forbidden(f"the certificate of agent {cert.agent} was revoked")
        return cert


@dataclass(frozen=True, slots=True)
class RevocationList:
    fleet: str
    seq: int
    time: float
    serials: frozenset[str]

    def sign(self, fleet_key: SigningKey) -> bytes:
        message = msgpack.packb(
            {
                "v": FORMAT,
                "kind": "revocations",
                "fleet": self.fleet,
                "seq": self.seq,
                "time": self.time,
                "serials": sorted(self.serials),
            },
            use_bin_type=True,
        )
        return bytes(fleet_key.sign(message))

    @classmethod
    def verify(cls, signed: bytes, fleet_public: bytes) -> RevocationList:
        """Check size, signature and format (IntegrityError, saying which failed)."""
        if len(signed) > MAX_REVOCATIONS_SIZE:
            raise IntegrityError(
                f"the revocation list is {len(signed):,} bytes, over the limit of "
                f"{MAX_REVOCATIONS_SIZE:,}"
            )
        doc = _open(signed, fleet_public, "revocations")
        try:
            return cls(
                str(doc["fleet"]),
                int(doc["seq"]),
                float(doc["time"]),
                frozenset(str(s) for s in doc["serials"]),
            )
        except (KeyError, TypeError, ValueError):
            raise IntegrityError("the revocation list is malformed") from None

    def newer(self, other: RevocationList | None) -> bool:
        """Gossip rule: take a list only if its seq is higher than the one held."""
        return other is None or self.seq > other.seq
