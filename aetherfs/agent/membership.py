"""Fleet membership: what admits this agent to its peers (`PeerConfig.admission`), and which
datasets it may receive from them (`DatasetAccess`).

Two deployments (protocol/peer.md, "Admission"):
- an agent reading the store with a keyring is admitted by the keyring's fleet secret
  (`SecretMembership`);
- an agent working through a hub enrols once with a join token and is admitted by the
  certificate the hub signs over its identity key (`CertificateMembership`). It renews the
  certificate before it expires, fetches the fleet's revocation list at an interval, and
  keeps newer lists that peers pass it. With the hub out of reach an unexpired certificate
  keeps working; once it has expired (or was revoked) the agent cannot join peers, and says
  so, but keeps working with the store.

The transport reads `admission(now)` for each new connection (None: do not connect), awaits
lists learnt from peers to `offer_revocations`, and is told of newer lists through
`on_revocations` and of a renewed certificate through `on_renewal`; `link_engine` does all
three for a running `SwarmEngine`. Both kinds answer `status(now)` for `aetherfs status`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import msgpack
import trio
from nacl.signing import VerifyKey

from aetherfs.agent import renewal
from aetherfs.agent.config import AgentConfig
from aetherfs.agent.identity import AgentId, AgentIdentity
from aetherfs.agent.log import Logger
from aetherfs.agent.private_file import read_private, write_private
from aetherfs.core.fleet_certs import AgentCertificate, RevocationList
from aetherfs.errors import (
    AetherError,
    Forbidden,
    IntegrityError,
    KeyringError,
    NotFound,
    Unauthenticated,
)
from aetherfs.keys import Keyring
from aetherfs.planner import PeerId
from aetherfs.protocol.admission import DatasetAccess, FleetCertificate, FleetSecret
from aetherfs.protocol.events import RevocationsUpdated
from aetherfs.repository import Keys
from aetherfs.repository.hub_client import HubClient
from aetherfs.swarm.engine import OnRevocations, RevocationNews

ENROLMENT_FILE = "fleet.json"
FORMAT = 1
DEFAULT_REVOCATION_INTERVAL = 300.0
RENEW_PATH = "/v1/fleet/renew"


class NotEnrolled(AetherError):
    """The agent holds no usable certificate of its fleet (the message says what to do)."""

    exit_code = 4


# Fleet secret (keyring) -----------------------------------------------------------------


def fleet_secret(keyring: object) -> bytes | None:
    """The keyring's fleet secret (`Keyring.fleet_secret`, a reader's keyring carries one too),
    or None if it carries none: what a hub hands out never holds the master."""
    try:
        held = getattr(keyring, "fleet_secret", None)
    except KeyringError:  # a keyring without the master: none
        return None
    return held if isinstance(held, bytes) and len(held) == 32 else None


@dataclass(frozen=True, slots=True)
class SecretMembership:
    """Admission by the fleet secret in the agent's keyring: nothing to renew or fetch."""

    secret: FleetSecret

    @classmethod
    def from_keyring(cls, keyring: Keyring) -> SecretMembership:
        secret = fleet_secret(keyring)
        if secret is None:
            raise NotEnrolled(
                f"the keyring of store {keyring.store_id} carries no fleet secret: export a "
                "reader's keyring with `aetherfs keys export --reader` from the producer's"
            )
        return cls(FleetSecret(secret))

    @property
    def fleet_id(self) -> str:
        return self.secret.fleet_id

    def admission(self, now: float) -> FleetSecret | None:
        return self.secret

    def problem(self, now: float) -> str | None:
        return None

    def status(self, now: float) -> dict[str, Any]:
        return {
            "admission": "fleet-secret",
            "fleet": self.fleet_id,
            "can_join_peers": True,
            "problem": None,
        }


# Dataset access ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessList:
    """The datasets this agent may receive from peers (by name), and those it could not
    prove, with why (no key in the keyring, no grant on the hub)."""

    granted: dict[str, DatasetAccess] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def accesses(self) -> list[DatasetAccess]:
        return list(self.granted.values())


def dataset_accesses(keyring: Keys, datasets: Iterable[str]) -> AccessList:
    """One `DatasetAccess` per dataset whose key the keyring holds or the hub hands us
    (`HubKeyring.dataset_key` asks the hub: call this off the event loop)."""
    granted: dict[str, DatasetAccess] = {}
    missing: dict[str, str] = {}
    for name in dict.fromkeys(datasets):
        try:
            granted[name] = DatasetAccess.from_dataset_key(keyring.dataset_key(name))
        except (KeyringError, Forbidden, NotFound, Unauthenticated) as exc:
            missing[name] = str(exc)
    return AccessList(granted, missing)


# Certificates -----------------------------------------------------------------------------


def read_certificate(signed: bytes, fleet_public: bytes) -> AgentCertificate:
    """Signature and format of a certificate, whatever its times (IntegrityError)."""
    try:
        doc = msgpack.unpackb(VerifyKey(fleet_public).verify(signed), raw=False)
        issued = float(doc["issued"])
    except Exception:
        raise IntegrityError("the agent certificate is not signed by this fleet's key") from None
    return AgentCertificate.verify(signed, fleet_public, issued)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the hub gave this agent, as kept in `STATE_DIR/fleet.json` (0600: it holds the
    agent's API token)."""

    hub: str
    fleet: str
    fleet_public: bytes
    certificate: bytes  # signed, as the hub issued it
    token: str = field(repr=False)  # the agent's API token (`agent:NAME`), for the hub
    revocations: bytes | None = None  # the newest signed revocation list held

    @property
    def cert(self) -> AgentCertificate:
        return read_certificate(self.certificate, self.fleet_public)

    @property
    def revocation_list(self) -> RevocationList | None:
        return _open_list(self.revocations, self) if self.revocations else None

    def to_json(self) -> bytes:
        doc = {
            "v": FORMAT,
            "hub": self.hub,
            "fleet": self.fleet,
            "fleet_public_key": self.fleet_public.hex(),
            "certificate": base64.b64encode(self.certificate).decode(),
            "token": self.token,
            "revocations": base64.b64encode(self.revocations).decode()
            if self.revocations
            else None,
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> Enrolment:
        try:
            doc = json.loads(raw)
            if doc.get("v") != FORMAT:
                raise ValueError(f"format {doc.get('v')!r}")
            revocations = doc.get("revocations")
            enrolment = cls(
                hub=str(doc["hub"]),
                fleet=str(doc["fleet"]),
                fleet_public=bytes.fromhex(doc["fleet_public_key"]),
                certificate=base64.b64decode(doc["certificate"], validate=True),
                token=str(doc["token"]),
                revocations=base64.b64decode(revocations, validate=True) if revocations else None,
            )
            enrolment.cert  # noqa: B018  (checks the signature now, not at first use)
        except (ValueError, KeyError, TypeError, AttributeError, IntegrityError) as exc:
            raise NotEnrolled(
                f"{path} is not a valid enrolment ({exc}): delete it and enrol again with "
                "--join-token"
            ) from None
        return enrolment

    def admission(self) -> FleetCertificate:
        return FleetCertificate(self.fleet, self.fleet_public, self.certificate, self.revocations)


def _open_list(signed: bytes, enrolment: Enrolment) -> RevocationList:
    held = RevocationList.verify(signed, enrolment.fleet_public)
    if held.fleet != enrolment.fleet:
        raise IntegrityError(f"a revocation list of fleet {held.fleet!r} is not ours")
    return held


def enrolment_path(state_dir: Path) -> Path:
    return state_dir / ENROLMENT_FILE


def load_enrolment(state_dir: Path) -> Enrolment | None:
    path = enrolment_path(state_dir)
    try:
        raw = read_private(path, "the agent's enrolment", "the agent must enrol again")
    except FileNotFoundError:
        return None
    return Enrolment.from_json(raw, path)


def save_enrolment(state_dir: Path, enrolment: Enrolment) -> None:
    write_private(enrolment_path(state_dir), enrolment.to_json())


# Talking to the hub (blocking: run these off the event loop) -------------------------------


@dataclass(frozen=True, slots=True)
class HubAddress:
    url: str
    ca_file: str | None = None

    def client(self, token: str | None) -> HubClient:
        return HubClient(self.url, token, self.ca_file, timeout=30.0)


def _issued(doc: Any, hub: HubAddress, identity: AgentIdentity, token: str) -> Enrolment:
    try:
        enrolment = Enrolment(
            hub=hub.url,
            fleet=str(doc["fleet"]),
            fleet_public=bytes.fromhex(doc["fleet_public_key"]),
            certificate=base64.b64decode(doc["certificate"], validate=True),
            token=str(doc.get("token") or token),
        )
        cert = enrolment.cert
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"the hub's answer to enrolment is malformed ({exc})") from None
    if cert.key != identity.public_key or cert.fleet != enrolment.fleet:
        raise IntegrityError("the hub issued a certificate for another key or fleet")
    return enrolment


def enrol(hub: HubAddress, join_token: str, agent: str, identity: AgentIdentity) -> Enrolment:
    """Spend the join token for a certificate over our identity key (and an API token)."""
    client = hub.client(None)
    try:
        doc = client.json(
            "POST",
            "/v1/fleet/enrol",
            json={
                "join_token": join_token,
                "agent": agent,
                "public_key": identity.public_key.hex(),
            },
        )
    except Unauthenticated:
        raise NotEnrolled(
            f"the hub {hub.url} refused the join token (unknown, expired or already used): "
            "ask a hub admin for a new one (`POST /v1/fleet/join-tokens`)"
        ) from None
    finally:
        client.close()
    return _issued(doc, hub, identity, "")


def renew(hub: HubAddress, enrolment: Enrolment, identity: AgentIdentity) -> Enrolment:
    """A fresh certificate for the same key, asked with the agent's API token and a
    signature by its identity key over the certificate it holds (docs/peers.md)."""
    signature = identity.signing_key.sign(
        b"aetherfs certificate renewal\0" + enrolment.certificate
    ).signature
    client = hub.client(enrolment.token)
    try:
        doc = client.json(
            "POST",
            RENEW_PATH,
            json={
                "certificate": base64.b64encode(enrolment.certificate).decode(),
                "signature": signature.hex(),
            },
        )
    finally:
        client.close()
    issued = _issued(doc, hub, identity, enrolment.token)
    if issued.fleet_public != enrolment.fleet_public:
        raise IntegrityError("the hub renewed the certificate under another fleet key")
    return replace(issued, revocations=enrolment.revocations)


def fetch_revocations(hub: HubAddress, enrolment: Enrolment) -> bytes:
    """The fleet's signed revocation list, as the hub holds it (checked by the caller)."""
    client = hub.client(enrolment.token)
    try:
        doc = client.json("GET", "/v1/fleet/revocations")
    finally:
        client.close()
    try:
        return base64.b64decode(doc["signed"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise IntegrityError("the hub's revocation list is malformed") from None


def prepare_enrolment(
    state_dir: Path,
    identity: AgentIdentity,
    hub: HubAddress,
    join_token: str | None,
    agent: str,
    now: float,
) -> Enrolment | None:
    """At start: the enrolment kept from an earlier run if it is for this identity and still
    unexpired, else a new one if a join token is given (blocking). A kept, expired one with
    no join token is returned as it is (the agent reports it cannot join peers)."""
    kept = load_enrolment(state_dir)
    if kept is not None and kept.cert.key != identity.public_key:
        kept = None  # made for an identity key since deleted: useless to peers
    if kept is not None and (join_token is None or now < kept.cert.expires):
        return kept
    if join_token is None:
        return None
    enrolment = enrol(hub, join_token, agent, identity)
    save_enrolment(state_dir, enrolment)
    return enrolment


# The certificate holder the transport reads -----------------------------------------------


class Reader(Protocol):
    """What the transport needs from either kind of membership."""

    @property
    def fleet_id(self) -> str: ...

    def admission(self, now: float) -> FleetSecret | FleetCertificate | None: ...

    def problem(self, now: float) -> str | None: ...

    def status(self, now: float) -> dict[str, Any]: ...


class Engine(Protocol):
    """What membership keeps current in a running swarm (`aetherfs.swarm.SwarmEngine`)."""

    def set_admission(self, admission: FleetCertificate) -> None: ...

    def update_revocations(self, signed: bytes) -> bool: ...

    def on_revocations(self, listener: OnRevocations) -> None: ...


class CertificateMembership:
    """The newest certificate and revocation list of an enrolled agent. Changes are kept on
    disk at once, so a restart starts from what was last learnt."""

    def __init__(
        self,
        state_dir: Path,
        identity: AgentIdentity,
        enrolment: Enrolment,
        hub: HubAddress | None,
        revocation_interval: float = DEFAULT_REVOCATION_INTERVAL,
        logger: Logger | None = None,
    ) -> None:
        self.logger = logger
        self.state_dir = state_dir
        self.identity = identity
        self.enrolment = enrolment
        self.hub = hub
        self.revocation_interval = revocation_interval
        self.listeners: list[Callable[[bytes], object]] = []
        self.renewal_listeners: list[Callable[[FleetCertificate], None]] = []
        self._save_lock = trio.Lock()
        self.failures = 0
        self.retry_time = 0.0  # when to try again after a failed renewal
        self.last_error: str | None = None
        self.last_renewed: float | None = None
        self.last_fetched: float | None = None

    @property
    def fleet_id(self) -> str:
        return self.enrolment.fleet

    @property
    def certificate(self) -> AgentCertificate:
        return self.enrolment.cert

    def revoked(self) -> bool:
        held = self.enrolment.revocation_list
        return held is not None and self.certificate.serial in held.serials

    def problem(self, now: float) -> str | None:
        """Why this agent cannot join peers now, or None."""
        cert = self.certificate
        if self.revoked():
            return (
                f"this agent's certificate (serial {cert.serial}) was revoked: it cannot join "
                "peers until a hub admin gives it a new join token"
            )
        if now >= cert.expires:
            return (
                f"this agent's certificate expired at {_when(cert.expires)} and could not be "
                f"renewed ({self.last_error or 'no hub reached'}): it cannot join peers; "
                "start it with a new --join-token"
            )
        return None

    def admission(self, now: float) -> FleetCertificate | None:
        """What a new connection presents, or None if this agent cannot join peers."""
        if self.problem(now) is not None:
            return None
        return self.enrolment.admission()

    async def offer_revocations(self, signed: bytes) -> bool:
        """A revocation list learnt from a peer (or the hub): kept if it is this fleet's,
        its signature checks and its seq is higher than the one held. True if kept; it is
        in use at once, on disk when this returns, and passed to every listener."""
        try:
            offered = _open_list(signed, self.enrolment)
        except IntegrityError as exc:
            if self.logger:
                self.logger.warning("fleet.revocations_refused", why=exc)
            return False
        if offered.seq == 0 or not offered.newer(self.enrolment.revocation_list):
            return False  # seq 0 is the hub's empty list before any revocation: nothing new
        self.enrolment = replace(self.enrolment, revocations=signed)
        await self._save()
        if self.logger:
            self.logger.info("fleet.revocations", seq=offered.seq, revoked=len(offered.serials))
            if self.revoked():
                self.logger.warning("fleet.revoked", problem=self.problem(time.time()))
        for listener in self.listeners:
            listener(signed)
        return True

    def on_revocations(self, listener: Callable[[bytes], object]) -> None:
        """Call `listener(signed)` with each newer list kept (to pass to open connections)."""
        self.listeners.append(listener)

    def on_renewal(self, listener: Callable[[FleetCertificate], None]) -> None:
        """Call `listener(admission)` with the admission of each renewed certificate."""
        self.renewal_listeners.append(listener)

    def link_engine(self, engine: Engine, nursery: trio.Nursery) -> None:
        """Keep a running engine current: new connections present each renewed certificate,
        and each newer list (from the hub or any peer) is in force on every connection at
        once. Lists the engine's peers pass are kept here (on disk), so they survive a
        restart and are passed on while the hub is out of reach; refused ones are logged."""
        self.on_renewal(engine.set_admission)
        self.on_revocations(engine.update_revocations)
        if self.enrolment.revocations is not None:  # learnt since the engine was made
            engine.update_revocations(self.enrolment.revocations)

        def heard(peer: PeerId | None, news: RevocationNews) -> None:
            if isinstance(news, RevocationsUpdated):
                nursery.start_soon(self.offer_revocations, news.signed)
            elif self.logger:
                self.logger.warning(
                    "fleet.revocations_refused",
                    peer=AgentId.of(peer.raw) if peer is not None else None,
                    seq=news.seq,
                    held=news.held,
                    why=news.reason,
                )

        engine.on_revocations(heard)

    async def _save(self) -> None:
        """Write what is held now, off the event loop; one write at a time, so the last
        one to start writes the newest state."""
        async with self._save_lock:
            await trio.to_thread.run_sync(save_enrolment, self.state_dir, self.enrolment)

    def next_renewal(self) -> float:
        """When to renew next (after a failure: when to try again); inf once revoked."""
        if self.revoked():
            return float("inf")
        return self.retry_time if self.failures else renewal.renew_at(self.certificate)

    def status(self, now: float) -> dict[str, Any]:
        cert = self.certificate
        held = self.enrolment.revocation_list
        problem = self.problem(now)
        return {
            "admission": "certificate",
            "fleet": self.fleet_id,
            "agent": cert.agent,
            "agent_id": str(self.identity.agent_id),
            "serial": cert.serial,
            "issued": cert.issued,
            "expires": cert.expires,
            "renew_at": renewal.renew_at(cert),
            "revocations_seq": held.seq if held else 0,
            "revoked": self.revoked(),
            "can_join_peers": problem is None,
            "problem": problem,
            "hub": self.hub.url if self.hub else None,
            "last_renewed": self.last_renewed,
            "last_revocations_fetch": self.last_fetched,
            "last_error": self.last_error,
        }

    # The loop: renew, fetch revocation lists ------------------------------------------
    async def renew_once(self, now: float) -> bool:
        assert self.hub is not None
        hub, enrolment = self.hub, self.enrolment
        try:
            fresh = await trio.to_thread.run_sync(renew, hub, enrolment, self.identity)
        except AetherError as exc:
            self.failures += 1
            self.last_error = f"renewal failed: {exc}"
            self.retry_time = renewal.retry_at(self.certificate, now, self.failures)
            if self.logger:
                self.logger.warning("fleet.renewal_failed", error=exc, retry_at=self.retry_time)
            return False
        self.enrolment = replace(fresh, revocations=self.enrolment.revocations)
        self.failures, self.last_error, self.last_renewed = 0, None, now
        await self._save()
        if self.logger:
            cert = self.certificate
            self.logger.info("fleet.renewed", serial=cert.serial, expires=_when(cert.expires))
        for listener in self.renewal_listeners:
            listener(self.enrolment.admission())
        return True

    async def fetch_once(self, now: float) -> bool:
        assert self.hub is not None
        hub, enrolment = self.hub, self.enrolment
        try:
            signed = await trio.to_thread.run_sync(fetch_revocations, hub, enrolment)
        except AetherError as exc:
            self.last_error = f"revocation list not fetched: {exc}"
            return False
        self.last_fetched = now
        return await self.offer_revocations(signed)

    async def run(
        self,
        clock: Callable[[], float] = time.time,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Renew before expiry and fetch the revocation list at its interval, forever."""
        task_status.started()
        if self.hub is None:
            return
        next_fetch = clock()
        while True:
            now = clock()
            if now >= self.next_renewal():
                await self.renew_once(now)
            if now >= next_fetch:
                await self.fetch_once(now)
                next_fetch = now + self.revocation_interval
            now = clock()
            wake = min(self.next_renewal(), next_fetch)
            await trio.sleep(max(0.05, wake - now))


def open_membership(
    config: AgentConfig, identity: AgentIdentity, hub: HubAddress, logger: Logger, now: float
) -> CertificateMembership | None:
    """At start, through a hub: the kept enrolment or a new one (blocking), logged. None when
    the agent is not enrolled (no join token ever given): it works, without peers."""
    name = config.agent_name or str(identity.agent_id)
    enrolment = prepare_enrolment(config.state_dir, identity, hub, config.join_token, name, now)
    if enrolment is None:
        logger.info("fleet.not_enrolled", agent_id=identity.agent_id, hint="give --join-token")
        return None
    membership = CertificateMembership(
        config.state_dir, identity, enrolment, hub, config.revocation_interval, logger
    )
    cert = membership.certificate
    logger.info(
        "fleet.enrolled",
        fleet=cert.fleet,
        agent=cert.agent,
        agent_id=identity.agent_id,
        serial=cert.serial,
        expires=_when(cert.expires),
    )
    problem = membership.problem(now)
    if problem:
        logger.warning("fleet.cannot_join", problem=problem)
    return membership


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
