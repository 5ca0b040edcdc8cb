"""Access control per dataset: roles read < write < admin, granted to subjects; default deny.

Subjects are `user:NAME`, `group:NAME`, `agent:ID`, or `anyone` (read only: a public dataset,
readable without credentials). Each dataset's grants are one JSON object on the store,
updated by compare-and-swap so two admins granting at once both land.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

from aetherfs.errors import Forbidden, IntegrityError, InvalidInput, NotFound, echo
from aetherfs.hub import layout
from aetherfs.hub.auth import Principal
from aetherfs.repository.cas import compare_and_swap
from aetherfs.store.base import Store

ROLES = ("read", "write", "admin")
ANYONE = "anyone"
_SUBJECT = re.compile(r"(user|group|agent):[A-Za-z0-9@._-]{1,128}")


def role_level(role: str) -> int:
    try:
        return ROLES.index(role) + 1
    except ValueError:
        raise InvalidInput(f"unknown role {echo(role)}: one of {', '.join(ROLES)}") from None


def check_subject(subject: str) -> str:
    if subject != ANYONE and not _SUBJECT.fullmatch(subject):
        raise InvalidInput(
            f"bad subject {echo(subject)}: user:NAME, group:NAME, agent:ID or {ANYONE}"
        )
    return subject


@dataclass(frozen=True, slots=True)
class Acl:
    grants: tuple[tuple[str, str], ...] = ()  # (subject, role), sorted

    def level(self, principal: Principal | None) -> int:
        subjects = {ANYONE} | (principal.subjects() if principal else set())
        return max((role_level(r) for s, r in self.grants if s in subjects), default=0)

    def to_json(self) -> dict[str, object]:
        return {"grants": [{"subject": s, "role": r} for s, r in self.grants]}

    @classmethod
    def from_bytes(cls, raw: bytes) -> Acl:
        try:
            doc = json.loads(raw)
            grants = tuple(sorted((str(g["subject"]), str(g["role"])) for g in doc["grants"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"an access list on the store is malformed: {exc}") from None
        return cls(grants)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True).encode()


def forbidden(role: str) -> Forbidden:
    # Same words whether the dataset exists or not: a refusal must not reveal which.
    return Forbidden(
        f"not allowed: this needs the {role} role on the dataset; ask one of its admins"
    )


class AclStore:
    """Grants on the store, read through a short cache: a grant or a revocation made through
    another hub takes effect within `cache_seconds` (0: read every time)."""

    def __init__(self, store: Store, cache_seconds: float = 0.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Acl]] = {}
        self._lock = threading.Lock()

    def get(self, dataset: str) -> Acl:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(dataset)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        try:
            acl = Acl.from_bytes(self.store.get(layout.acl_key(dataset)))
        except NotFound:
            acl = Acl()
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[dataset] = (now, acl)
        return acl

    def forget(self, dataset: str) -> None:
        with self._lock:
            self._cache.pop(dataset, None)

    def allowed(self, principal: Principal | None, dataset: str, role: str) -> bool:
        if principal is not None and principal.admin:
            return True
        return self.get(dataset).level(principal) >= role_level(role)

    def require(self, principal: Principal | None, dataset: str, role: str) -> None:
        if not self.allowed(principal, dataset, role):
            raise forbidden(role)

    def set(self, dataset: str, subject: str, role: str | None) -> Acl:
        """Grant `role` to `subject` (None: remove every grant of the subject)."""
        check_subject(subject)
        if role is not None:
            role_level(role)
            if subject == ANYONE and role != "read":
                raise InvalidInput(f"{ANYONE} can only be granted read")

        def regrant(raw: bytes | None) -> tuple[bytes, Acl]:
            acl = Acl.from_bytes(raw) if raw is not None else Acl()
            grants = {s: r for s, r in acl.grants if s != subject}
            if role is not None:
                grants[subject] = role
            updated = Acl(tuple(sorted(grants.items())))
            return updated.to_bytes(), updated

        busy = f"the access list of {dataset} is being changed by many at once; retry"
        updated = compare_and_swap(self.store, layout.acl_key(dataset), regrant, busy)
        self.forget(dataset)
        return updated

    def drop(self, dataset: str) -> None:
        self.store.delete(layout.acl_key(dataset))
        self.forget(dataset)
