"""A push in progress, announced on the store, so that gc leaves alone the packs it will name.

A push writes, under `pushes/<dataset>/<lease id>/` (`store/layout.py`):
- `@lease`, rewritten every RENEW_EVERY while the push runs: its mtime says the push is alive;
- one empty object per pack that the push will name and that no tag names yet, named by the
  pack's id and written *before* the pack is PUT or reused.

gc (`ops/gc.py`) spares every pack named under a lease whose `@lease` is younger than
LEASE_TTL, and acts on what it read of the leases for at most SETTLE seconds. That leaves one
case: a pack gc listed as garbage before the push named it, which the push then finds on the
store (a pack an earlier try uploaded, from the journal, or a PUT that found the pack already
there). Such a pack may still be deleted up to SETTLE after the push named it, so before the
push writes its manifest it waits until SETTLE has passed since then and checks that each is
still there (`confirm`). A push paused for longer than LEASE_TTL / 2 renews its lease and checks
all its packs the same way, since gc may have taken its lease for a dead one's.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from aetherfs.core.ids import ManifestId, PackId
from aetherfs.errors import AetherError, NotFound
from aetherfs.store import layout
from aetherfs.store.base import Store

LEASE_TTL = 3600.0  # a lease not renewed for this long belongs to a push that died
RENEW_EVERY = 300.0
SETTLE = 10.0  # how long gc may act on a reading of the leases (see gc's sweep)
CHECKS_AT_ONCE = 8  # HEADs in flight when packs are checked


class PushLease:
    """The lease of one push on `store`; with no store (a push through a hub), it only
    remembers, and gc's grace period is what protects the push."""

    def __init__(
        self,
        store: Store | None,
        dataset: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.dataset = dataset
        self.id = uuid.uuid4().hex
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._named: set[PackId | ManifestId] = set()
        self._at_risk: dict[PackId, float] = {}  # pack -> when it was named
        self._renewed = clock()
        self._renew()

    def _key(self, name: str) -> str:
        return layout.push_key(self.dataset, self.id, name)

    def _renew(self) -> None:
        if self.store is not None:
            self.store.put(self._key(layout.LEASE), b"")
        self._renewed = self._clock()

    def name(self, items: Iterable[PackId | ManifestId], at_risk: bool = False) -> None:
        """Announce packs (or the manifest) this push will name; `at_risk`: packs already
        on the store."""
        with self._lock:
            fresh = [item for item in items if item not in self._named]
        self._write_markers(fresh)
        now = self._clock()
        with self._lock:
            self._named.update(fresh)
            if at_risk:
                self._at_risk.update((p, now) for p in fresh if isinstance(p, PackId))
            due = now - self._renewed >= RENEW_EVERY
        if due:
            self._renew()

    def _write_markers(self, items: list[PackId | ManifestId]) -> None:
        store = self.store
        if store is not None:
            _each(lambda item: store.put(self._key(item.hex()), b""), items)

    def not_needed(self, packs: Iterable[PackId]) -> None:
        """Named packs the push will not name after all (gone from the store): unchecked."""
        with self._lock:
            for pack in packs:
                self._at_risk.pop(pack, None)

    def found_there(self, pack: PackId) -> None:
        """A named pack's PUT found it already stored: it may predate its name."""
        with self._lock:
            self._at_risk.setdefault(pack, self._clock())

    def confirm(self, has_pack: Callable[[PackId], bool]) -> None:
        """Before the manifest is written: every pack that gc could have taken is still there."""
        with self._lock:
            stale = self._clock() - self._renewed >= LEASE_TTL / 2
        if stale:  # gc may have taken this push for a dead one: name all again, check all
            self._renew()
            with self._lock:
                named = list(self._named)
            self._write_markers(named)
            # A gc that read the lease as dead just before the renewal may still be removing
            # its markers for SETTLE: write them again once it cannot be.
            self._sleep(SETTLE)
            self._write_markers(named)
            with self._lock:
                self._at_risk = {p: self._renewed for p in named if isinstance(p, PackId)}
        with self._lock:
            checks = dict(self._at_risk)
        if not checks:
            return
        wait = max(checks.values()) + SETTLE - self._clock()
        if wait > 0:
            self._sleep(wait)
        with ThreadPoolExecutor(CHECKS_AT_ONCE) as pool:
            present = list(pool.map(has_pack, checks))
        missing = [pack for pack, there in zip(checks, present, strict=True) if not there]
        if missing:
            raise NotFound(
                f"pack {missing[0].short()} (and {len(missing) - 1} more) left the store while "
                "this push ran (a gc, or the store was reset); nothing was published: push again"
            )

    def release(self) -> None:
        """The version is published: its tags name its packs now."""
        if self.store is None:
            return
        store = self.store
        with contextlib.suppress(AetherError):  # left behind, it expires after LEASE_TTL
            _each(lambda item: store.delete(self._key(item.hex())), list(self._named))
            store.delete(self._key(layout.LEASE))  # last: gc takes markers without it as dead


def _each(call: Callable[[PackId | ManifestId], object], items: list[PackId | ManifestId]) -> None:
    """`call` on each item, a few at a time (one request each)."""
    if len(items) == 1:
        call(items[0])
    elif items:
        with ThreadPoolExecutor(min(CHECKS_AT_ONCE, len(items))) as pool:
            list(pool.map(call, items))
