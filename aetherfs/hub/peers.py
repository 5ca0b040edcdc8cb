"""Peer hints: where the other agents of a fleet listen, from their status reports.

Multicast does not cross VLANs or Docker bridges, so an agent also asks the hub which addresses
its fleet's peers reported (`GET /v1/fleet/peers`) and probes them as it probes mDNS answers.
A report's `peer` (`models.PeerListen`) is kept apart from the report, small, at
`hub/agents/ID/peer.json`, so the table of a fleet's listen addresses never reads whole reports.

`PeerTable` holds one snapshot of every agent's record and of the agents left out for their
certificates, rebuilt from the store when it is `ttl` old (or this hub revoked something);
this hub's own reports land in it at once. `choose` is pure: the snapshot, the caller and the
time in, the hints out.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from aetherfs.errors import InvalidInput, NotFound, bounded
from aetherfs.hub import layout as hub_layout
from aetherfs.hub import models
from aetherfs.store.base import Store

FRESH_SECONDS = 120.0  # agents report every few seconds: two minutes of silence is gone
MAX_HINTS = 64  # agents named per answer; discovery probes each of their addresses
TABLE_SECONDS = 10.0  # reports and revocations through another hub land within this


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """An agent's last reported peer listen addresses, as the hub keeps them."""

    agent: str
    fleet: str
    addresses: tuple[str, ...]
    port: int
    received: float

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "fleet": self.fleet,
            "addresses": list(self.addresses),
            "port": self.port,
            "received": self.received,
        }

    @classmethod
    def from_json(cls, raw: bytes) -> PeerRecord | None:
        """None for a damaged record: that agent is simply not hinted until it reports."""
        try:
            doc = json.loads(raw)
            listen = models.PeerListen.model_validate(doc)
            agent, received = doc["agent"], doc["received"]
        except (ValueError, KeyError, TypeError, ValidationError):
            return None
        if not isinstance(agent, str) or not isinstance(received, int | float):
            return None
        return cls(agent, listen.fleet, tuple(listen.addresses), listen.port, float(received))

    def hint(self) -> models.PeerHint:
        return models.PeerHint(
            agent=self.agent, addresses=list(self.addresses), port=self.port, received=self.received
        )


def record_key(agent_id: str) -> str:
    return f"{hub_layout.AGENTS}{hub_layout.check_agent_id(agent_id)}/peer.json"


def from_report(agent_id: str, received: float, report: Mapping[str, Any]) -> PeerRecord | None:
    """The report's `peer` (None: absent or null); InvalidInput, in words, if malformed."""
    value = report.get("peer")
    if value is None:
        return None
    try:
        listen = models.PeerListen.model_validate(value)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in ("peer", *problem.get("loc", ())))
        raise InvalidInput(
            bounded(
                f"report {where}: {problem.get('msg', 'not acceptable')}; see docs/hub.md "
                '"Peer hints" for the shape',
                300,
            )
        ) from None
    addresses = tuple(dict.fromkeys(listen.addresses))  # each once, in the agent's order
    return PeerRecord(agent_id, listen.fleet, addresses, listen.port, received)


def _rank(caller: str, agent: str) -> bytes:
    return hashlib.blake2b(f"{caller}\0{agent}".encode(), digest_size=8).digest()


def choose(
    records: Iterable[PeerRecord],
    fleet: str,
    caller: str | None,
    left_out: frozenset[str],
    now: float,
    fresh: float = FRESH_SECONDS,
    limit: int = MAX_HINTS,
) -> list[PeerRecord]:
    """The fleet's fresh agents, not the caller, none left out, at most `limit`.

    Over the limit, each caller gets the agents ranked first by a hash of (caller, agent)
    (rendezvous hashing): its set stays the same from one ask to the next, and different
    callers get different sets, so hints across a large fleet still connect all of it.
    """
    found = [
        r
        for r in records
        if r.fleet == fleet
        and r.agent != caller
        and r.agent not in left_out
        and now - fresh <= r.received <= now + fresh  # a hub clock far ahead is no excuse
    ]
    found.sort(key=lambda r: _rank(caller or "", r.agent))
    return sorted(found[:limit], key=lambda r: r.agent)


@dataclass(frozen=True, slots=True)
class _Cert:
    agent: str
    expires: float


def left_out(certs: Iterable[tuple[str, _Cert]], revoked: frozenset[str], now: float) -> set[str]:
    """Agents enrolled here that hold no certificate both unexpired and unrevoked.

    An agent never enrolled (admitted by its keyring's fleet secret) has no certificate here
    and is not left out; one whose old serial was revoked after it renewed is not either (its
    peers admit it with the new certificate, so the hub names it too).
    """
    enrolled: set[str] = set()
    good: set[str] = set()
    for serial, cert in certs:
        enrolled.add(cert.agent)
        if serial not in revoked and cert.expires > now:
            good.add(cert.agent)
    return enrolled - good


@dataclass(slots=True)
class _Snapshot:
    records: dict[str, PeerRecord] = field(default_factory=dict)
    left_out: frozenset[str] = frozenset()
    read_at: float = float("-inf")


class PeerTable:
    """Every agent's peer record and who is left out, from the store, shared by all callers."""

    def __init__(
        self, store: Store, revoked: Callable[[], frozenset[str]], ttl: float = TABLE_SECONDS
    ) -> None:
        self.store = store
        self.revoked = revoked
        self.ttl = ttl
        self._certs: dict[str, _Cert | None] = {}  # serial -> record: issued once, never changed
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()  # one rebuild at a time; callers meanwhile reuse it

    def put(self, record: PeerRecord) -> None:
        """Store an agent's record; this hub's snapshot has it at once."""
        self.store.put(record_key(record.agent), json.dumps(record.to_json()).encode())
        with self._lock:
            self._snapshot.records[record.agent] = record

    def forget(self) -> None:
        """Rebuild at the next ask (this hub revoked a certificate)."""
        with self._lock:
            self._snapshot = replace(self._snapshot, read_at=float("-inf"))

    def snapshot(self) -> tuple[list[PeerRecord], frozenset[str]]:
        with self._lock:
            if time.monotonic() - self._snapshot.read_at >= self.ttl:
                self._snapshot = self._read()
            return list(self._snapshot.records.values()), self._snapshot.left_out

    def _read(self) -> _Snapshot:
        read_at = time.monotonic()
        records = {}
        for key in self.store.list(hub_layout.AGENTS):
            if not key.endswith("/peer.json"):
                continue
            try:
                found = PeerRecord.from_json(self.store.get(key))
            except NotFound:
                continue  # gone since it was listed
            if found is not None:
                records[found.agent] = found
        return _Snapshot(
            records, frozenset(left_out(self._read_certs(), self.revoked(), time.time())), read_at
        )

    def _read_certs(self) -> list[tuple[str, _Cert]]:
        found = []
        for key in self.store.list(hub_layout.CERTS):
            serial = key[len(hub_layout.CERTS) :].removesuffix(".json")
            if serial not in self._certs:
                self._certs[serial] = self._read_cert(key)
            cert = self._certs[serial]
            if cert is not None:
                found.append((serial, cert))
        return found

    def _read_cert(self, key: str) -> _Cert | None:
        try:
            doc = json.loads(self.store.get(key))
            return _Cert(str(doc["agent"]), float(doc["expires"]))
        except (NotFound, ValueError, KeyError, TypeError):
            return None
