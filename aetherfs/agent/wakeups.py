"""The channel of wake-ups between whoever learns that a channel may have moved (the hub's watch
stream, the REST and gRPC calls, upkeep) and the loops that look.

A waker only says "look" or "the tag moved to seq N"; wake-ups not yet seen are merged, so a
burst of events costs one check, and a waker never blocks. Whether a wake-up is worth a check is
the loop's decision (`ChannelDecisions.handle_wake`).
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from aetherfs.agent.config import Subscription
from aetherfs.agent.decisions import Wake


class Wakeups:
    def __init__(self, subscriptions: Iterable[Subscription]) -> None:
        self._pending: dict[Subscription, Wake | None] = dict.fromkeys(subscriptions)
        self._events = {sub: trio.Event() for sub in self._pending}

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._pending)

    def wake(self, sub: Subscription, seq: int | None = None) -> None:
        """Wake `sub`'s loop: to look now (`seq` None) or because its tag reached `seq`."""
        if sub not in self._pending:
            return
        wake = Wake(look=True) if seq is None else Wake(seq=seq)
        pending = self._pending[sub]
        self._pending[sub] = wake if pending is None else pending.merge(wake)
        self._events[sub].set()

    def wake_dataset(self, dataset: str, seq: int | None = None, tag: str | None = None) -> None:
        """Wake every loop of `dataset` (only those of `tag`, if named)."""
        for sub in self._pending:
            if sub.dataset == dataset and tag in (None, sub.channel):
                self.wake(sub, seq)

    def wake_all(self) -> None:
        for sub in self._pending:
            self.wake(sub)

    def take(self, sub: Subscription) -> Wake | None:
        """The wake-ups gathered for `sub` since last taken, if any."""
        wake, self._pending[sub] = self._pending[sub], None
        self._events[sub] = trio.Event()
        return wake

    async def wait(self, sub: Subscription, deadline: float | None) -> Wake | None:
        """Until `sub` is woken or `deadline` (trio's clock) passes; None: the deadline."""
        if self._pending[sub] is None:
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._events[sub].wait()
        return self.take(sub)
