"""Who may talk to whom: fleet admission (a shared fleet secret, or a hub-signed certificate)
and per-dataset rights ("may receive the ciphertext of dataset D").

Every proof is bound to one session's transcript hash and to the prover's role, so it cannot
be replayed into another session or reflected back at its sender.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import IntEnum

import blake3
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from aetherfs.core import crypto
from aetherfs.core.fleet_certs import AgentCertificate, RevocationList
from aetherfs.errors import AetherError
from aetherfs.protocol.errors import LocalProtocolError

BLINDED_SIZE = 16
KEY_SIZE = 32
SIGNATURE_SIZE = 64


class AdmissionKind(IntEnum):
    FLEET_SECRET = 1
    CERTIFICATE = 2


class NotAdmitted(AetherError):
    """The peer could not prove it belongs to our fleet (the reason says which check failed)."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class FleetSecret:
    """Admission by the 32-byte fleet secret every reader keyring of the fleet carries."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_SIZE:
            raise LocalProtocolError(f"a fleet secret is {KEY_SIZE} bytes, got {len(self.secret)}")

    @property
    def fleet_id(self) -> str:
        """A public name of the fleet (for discovery records): reveals nothing of the secret."""
        return crypto.derive_key(self.secret, "aetherfs fleet id")[:8].hex()

    def proof(self, role: bytes, transcript: bytes, identity: bytes) -> bytes:
        key = crypto.derive_key(self.secret, "aetherfs peer admission")
        return blake3.blake3(role + transcript + identity, key=key).digest()

    def check(self, proof: bytes, role: bytes, transcript: bytes, identity: bytes) -> None:
        if not hmac.compare_digest(proof, self.proof(role, transcript, identity)):
            raise NotAdmitted("the peer does not hold this fleet's secret")


@dataclass(frozen=True, slots=True)
class FleetCertificate:
    """Admission by a certificate the hub signed over our identity key (`hub/fleet.py`).

    `revocations` is the newest signed revocation list held; peers pass it to each other.
    """

    fleet: str
    fleet_public: bytes
    certificate: bytes  # signed bytes, as the hub issued them
    revocations: bytes | None = None

    @property
    def fleet_id(self) -> str:
        return self.fleet

    def check(
        self,
        signed: bytes,
        identity: bytes,
        now: float,
        revoked: RevocationList | None,
    ) -> AgentCertificate:
        try:
            cert = AgentCertificate.verify(
                signed, self.fleet_public, now, revoked.serials if revoked else frozenset()
            )
        except AetherError as exc:
            raise NotAdmitted(str(exc)) from None
        if cert.fleet != self.fleet:
            raise NotAdmitted(f"the peer's certificate is for fleet {cert.fleet!r}")
        if cert.key != identity:
            raise NotAdmitted("the peer's certificate is for another key")
        return cert


Admission = FleetSecret | FleetCertificate


def open_revocations(signed: bytes, admission: FleetCertificate) -> RevocationList:
    """Verify a revocation list for this fleet (IntegrityError if not signed by its key)."""
    held = RevocationList.verify(signed, admission.fleet_public)
    if held.fleet != admission.fleet:
        raise NotAdmitted(f"a revocation list of fleet {held.fleet!r} is not ours")
    return held


@dataclass(frozen=True, slots=True, order=True)
class AccessId:
    """A dataset's public access id: the Ed25519 public key derived from its dataset key.
    Whoever can sign with the matching key may receive the dataset's ciphertext."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SIZE:
            raise LocalProtocolError(f"an access id is {KEY_SIZE} bytes, got {len(self.key)}")

    def hex(self) -> str:
        return self.key.hex()

    def short(self) -> str:
        return self.key.hex()[:12]

    def blinded(self, session_id: bytes) -> bytes:
        """The name of this dataset in one session: unlinkable across sessions, and meaningless
        to a peer that does not know the access id."""
        return blake3.blake3(b"aetherfs blinded dataset\0" + self.key, key=session_id).digest(
            BLINDED_SIZE
        )

    def check(self, signature: bytes, role: bytes, transcript: bytes) -> bool:
        try:
            VerifyKey(self.key).verify(_access_message(role, transcript), signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class DatasetAccess:
    """The right to receive one dataset, held as the access signing key. Derived from the
    dataset key, so every reader of the dataset has it and nobody else can make it."""

    access_id: AccessId
    signing_key: SigningKey = field(repr=False, compare=False)

    @classmethod
    def from_dataset_key(cls, dataset_key: bytes) -> DatasetAccess:
        signing_key = SigningKey(crypto.derive_key(dataset_key, "aetherfs dataset access"))
        return cls(AccessId(bytes(signing_key.verify_key)), signing_key)

    def prove(self, role: bytes, transcript: bytes) -> bytes:
        return self.signing_key.sign(_access_message(role, transcript)).signature


def _access_message(role: bytes, transcript: bytes) -> bytes:
    return b"aetherfs dataset access\0" + role + transcript
