"""What a PeerConnection reports that the protocol's own messages do not already say.

Received data messages (Bitfield, Have, HaveRange, Request, Block, Done, Reject, Cancel,
Record, RecordRequest) are reported as the message values themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from aetherfs.core.fleet_certs import AgentCertificate
from aetherfs.errors import AetherError
from aetherfs.protocol.admission import AccessId
from aetherfs.protocol.messages import (
    Bitfield,
    Block,
    Cancel,
    Done,
    Have,
    HaveRange,
    Reason,
    Record,
    RecordRequest,
    Reject,
    Request,
)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    key: bytes  # the peer's Ed25519 identity key: its stable id
    agent: str  # the name it gave (the certificate's agent name in certificate mode)
    version: int  # the protocol version agreed
    fleet: str
    certificate: AgentCertificate | None


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake is over and the peer is admitted: data messages may flow."""

    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class AccessProved:
    """The peer proved it may receive this dataset: offer and serve it to this peer."""

    dataset: AccessId


@dataclass(frozen=True, slots=True)
class RevocationsUpdated:
    """The peer passed a newer, verified revocation list: keep it and pass it on."""

    signed: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class RevocationsRefused:
    """The peer passed a revocation list this side did not take, and why: older than the one
    held (the connection stays open), or not signed by the fleet key, of another fleet,
    oversized or malformed (the connection then ends: a ConnectionClosed follows)."""

    seq: int | None  # the list's seq, None if it could not be read
    held: int  # the seq of the list this side holds (0: none)
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over (reported exactly once). Send `data_to_send()` and close."""

    reason: Reason
    text: str
    by_peer: bool
    error: AetherError | None = None  # RemoteProtocolError, NotAdmitted, or None


Event = (
    Established
    | AccessProved
    | RevocationsUpdated
    | RevocationsRefused
    | ConnectionClosed
    | Bitfield
    | Have
    | HaveRange
    | Request
    | Block
    | Done
    | Reject
    | Cancel
    | Record
    | RecordRequest
)
