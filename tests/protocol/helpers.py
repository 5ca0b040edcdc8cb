"""Two in-memory PeerConnections pumped into each other (aioquic's client_and_server shape),
with a hook to drop, replay, reorder or alter frames on the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from aetherfs.core.fleet_certs import AgentCertificate, RevocationList
from aetherfs.protocol.admission import (
    AccessId,
    Admission,
    DatasetAccess,
    FleetCertificate,
    FleetSecret,
)
from aetherfs.protocol.connection import PeerConfig, PeerConnection
from aetherfs.protocol.events import Event
from aetherfs.protocol.frames import PREFIX

FLEET = FleetSecret(bytes(range(32)))
DATASET = DatasetAccess.from_dataset_key(b"d" * 32)
OTHER_DATASET = DatasetAccess.from_dataset_key(b"o" * 32)

# A tamper hook sees the frames one side sent in one flight and returns what arrives.
Tamper = Callable[[list[bytes]], list[bytes]]


def config(admission: Admission = FLEET, **overrides: Any) -> PeerConfig:
    return PeerConfig(SigningKey.generate(), admission, agent="agent", **overrides)


def split_frames(data: bytes) -> list[bytes]:
    frames, at = [], 0
    while at < len(data):
        length, _ = PREFIX.unpack_from(data, at)
        frames.append(data[at : at + PREFIX.size + length])
        at += PREFIX.size + length
    return frames


@dataclass
class Pair:
    client: PeerConnection
    server: PeerConnection
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)

    def pump(
        self, now: float, to_server: Tamper | None = None, to_client: Tamper | None = None
    ) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until neither side has anything to send; returns the events
        of this pump (client's, server's) and keeps them all."""
        got_client: list[Event] = []
        got_server: list[Event] = []
        for _ in range(100):
            moved = False
            for sender, receiver, tamper, sink in (
                (self.client, self.server, to_server, got_server),
                (self.server, self.client, to_client, got_client),
            ):
                data = sender.data_to_send()
                if not data:
                    continue
                moved = True
                frames = split_frames(data)
                if tamper is not None:
                    frames = tamper(frames)
                for frame in frames:
                    sink.extend(receiver.receive_data(frame, now))
            if not moved:
                break
        self.client_events += got_client
        self.server_events += got_server
        return got_client, got_server


def connect(
    client_config: PeerConfig | None = None,
    server_config: PeerConfig | None = None,
    client_datasets: list[DatasetAccess | AccessId] | None = None,
    server_datasets: list[DatasetAccess | AccessId] | None = None,
    now: float = 0.0,
) -> Pair:
    client = PeerConnection(client_config or config(), True, client_datasets or [])
    server = PeerConnection(server_config or config(), False, server_datasets or [])
    client.start(now)
    server.start(now)
    pair = Pair(client, server)
    pair.pump(now)
    return pair


@dataclass
class Fleet:
    key: SigningKey = field(default_factory=SigningKey.generate)
    name: str = "fleet-1"
    serial: int = 0

    def member(
        self,
        expires: float = 1000.0,
        revocations: bytes | None = None,
        name: str | None = None,
        agent: str = "edge",
        **overrides: Any,
    ) -> tuple[PeerConfig, AgentCertificate]:
        identity = SigningKey.generate()
        self.serial += 1
        cert = AgentCertificate(
            name or self.name, agent, bytes(identity.verify_key), f"s{self.serial}", 0.0, expires
        )
        admission = FleetCertificate(
            self.name, bytes(self.key.verify_key), cert.sign(self.key), revocations
        )
        return PeerConfig(identity, admission, agent=agent, **overrides), cert

    def revocations(self, seq: int, *serials: str) -> bytes:
        return RevocationList(self.name, seq, 0.0, frozenset(serials)).sign(self.key)
