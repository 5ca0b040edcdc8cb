"""Compare-and-swap on one store object, retried after a jittered backoff when a writer loses.

Tags, access lists and the revocation list are each one object that several writers (CLI
processes, hubs on one bucket) update at once. Each update reads the object and its version,
decides, and writes only if the version is unchanged; the loser reads again. Retrying at once
makes every loser collide again in step, so a loser first waits a random time, drawn afresh
each attempt from a window that doubles ("full jitter"), which spreads writers apart.
Retries go through stamina (tenacity underneath), which also stops after `attempts`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import stamina

from aetherfs.errors import Conflict, NotFound
from aetherfs.store.base import Store

T = TypeVar("T")

# stamina logs each retry at WARNING; with no handler Python would print it on stderr, under
# the CLI's one-line messages. Whoever configures logging (the agent, the hub) still gets it.
logging.getLogger("stamina").addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a loser waits before attempt n + 1: uniform in [0, min(cap, first * 2**n))."""

    attempts: int = 50
    first: float = 0.005  # a local-store CAS takes about 1 ms, an S3 one 5-20 ms
    cap: float = 0.5
    uniform: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def wait(self, lost: int) -> float:
        """The wait after the `lost`-th lost race (1-based)."""
        return self.uniform(0.0, min(self.cap, self.first * 2 ** (lost - 1)))


BACKOFF = Backoff()


class _LostRace(Exception):
    """Another writer changed the object between our read and our write."""


def compare_and_swap(
    store: Store,
    key: str,
    change: Callable[[bytes | None], tuple[bytes | None, T]],
    busy: str,
    backoff: Backoff = BACKOFF,
) -> T:
    """Apply `change` to the object at `key` atomically, and return what it returns.

    `change` gets the stored bytes (None: no object yet) and returns the bytes to write
    (None: nothing to write) and the result. It may run several times, so it must not act
    outside itself; an error it raises is not retried. After `backoff.attempts` lost races
    the update gives up with Conflict, whose message is `busy`.
    """
    lost = 0

    def wait(exc: Exception) -> float | bool:
        nonlocal lost
        if not isinstance(exc, _LostRace):
            return False  # not ours to retry
        lost += 1
        return backoff.wait(lost)

    try:
        for attempt in stamina.retry_context(on=wait, attempts=backoff.attempts, timeout=None):
            with attempt:
                try:
                    current = store.get_versioned(key)
                    data: bytes | None = current.data
                    version: str | None = current.version
                except NotFound:
                    data, version = None, None
                new, result = change(data)
                if new is None:
                    return result
                try:
                    store.put_if_version(key, new, version)
                except Conflict:
                    raise _LostRace from None
                return result
    except _LostRace:
        pass
    raise Conflict(busy)
