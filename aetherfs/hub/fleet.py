"""The hub's side of agent certificates: the fleet key, derived from the hub's keyring.

The certificate and revocation-list formats and their checks are pure and live in
`aetherfs.core.fleet_certs`, so a peer checks them with no hub; they are re-exported here for
the hub's callers.
"""

from __future__ import annotations

from nacl.signing import SigningKey

from aetherfs.core import crypto
from aetherfs.core.fleet_certs import FORMAT, SIGNATURE_SIZE, AgentCertificate, RevocationList
from aetherfs.keys import Keyring

__all__ = [
    "FORMAT",
    "SIGNATURE_SIZE",
    "AgentCertificate",
    "RevocationList",
    "fleet_signing_key",
]


def fleet_signing_key(keyring: Keyring) -> SigningKey:
    """The fleet key: derived from the hub's master secret, so every hub of a store has it."""
    return SigningKey(crypto.derive_key(keyring.master, "fleet ed25519"))
