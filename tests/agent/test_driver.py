"""The trio driver of a channel loop on trio's `MockClock` (autojump): when it checks, after
clean checks, a missing channel, failures and wake-ups. No store, no process: the check is a
coroutine that records the time it ran and answers what the test scripts."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import trio
import trio.testing

from aetherfs.agent.config import Subscription
from aetherfs.agent.decisions import ChannelDecisions, Next, Timing
from aetherfs.agent.driver import drive
from aetherfs.agent.wakeups import Wakeups
from aetherfs.errors import StoreUnavailable

SUB = Subscription("team/geo-db", "stable")
POLL, RETRY_MAX = 10.0, 60.0


class Scripted:
    """Answers each check from `answer(n)`: True (seen), False (missing) or an exception."""

    def __init__(self, answer: Callable[[int], bool | Exception]) -> None:
        self.answer = answer
        self.times: list[float] = []
        self.reports: list[tuple[Next, Exception | None]] = []

    async def check(self) -> bool:
        self.times.append(trio.current_time())
        await trio.sleep(0.5)  # the check itself takes time
        answer = self.answer(len(self.times))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def report(self, nxt: Next, exc: Exception | None) -> None:
        self.reports.append((nxt, exc))


async def run_for(
    seconds: float, script: Scripted, wakeups: Wakeups | None = None, seed: int = 7
) -> ChannelDecisions:
    wakeups = wakeups or Wakeups([SUB])
    d = ChannelDecisions(Timing(POLL, RETRY_MAX), random.Random(seed), trio.current_time())
    with trio.move_on_after(seconds):
        await drive(d, wakeups, SUB, script.check, script.report)
    return d


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_checks_at_once_then_every_jittered_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Scripted(lambda n: True)
    start = trio.current_time()
    await run_for(600, script)
    assert script.times[0] == start
    assert len(script.times) > 40
    between = gaps(script.times)  # the interval counts from the end of the check
    assert all(POLL * 0.8 + 0.5 <= g <= POLL * 1.2 + 0.5 for g in between)
    assert len({round(g, 6) for g in between}) > len(between) // 2  # not one fixed interval


async def test_a_channel_that_does_not_exist_yet_is_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Missing for ten minutes, then published: seen within one interval, no error, no backoff.
    script = Scripted(lambda n: trio.current_time() >= 600)
    await run_for(700, script)
    assert max(gaps(script.times)) <= POLL * 1.2 + 0.5
    first_seen = next(t for t in script.times if t >= 600)
    assert first_seen - 600 <= POLL * 1.2 + 0.5
    assert all(exc is None and nxt.attempt == 0 for nxt, exc in script.reports)
    assert script.reports[0][0].state == "waiting" and script.reports[-1][0].state == "idle"


async def test_failures_back_off_to_retry_max_and_recover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    down = StoreUnavailable("the store is down")
    script = Scripted(lambda n: down if n <= 8 else True)
    await run_for(600, script)
    between = gaps(script.times)
    assert POLL / 2 <= between[0] - 0.5 <= POLL
    assert all(g - 0.5 <= RETRY_MAX for g in between)
    assert between[5] - 0.5 >= RETRY_MAX / 2  # reached the cap's upper half
    assert [nxt.attempt for nxt, _ in script.reports[:9]] == [1, 2, 3, 4, 5, 6, 7, 8, 0]
    assert script.reports[7][1] is down and script.reports[8][1] is None


async def test_a_wake_up_checks_now_and_a_stale_one_does_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wakeups = Wakeups([SUB])
    script = Scripted(lambda n: True)
    async with trio.open_nursery() as nursery:
        d = ChannelDecisions(Timing(POLL, RETRY_MAX), random.Random(3), trio.current_time())
        nursery.start_soon(drive, d, wakeups, SUB, script.check, script.report)
        await trio.sleep(2)
        d.highest_seq = 4  # (the check accepted a record of seq 4)
        wakeups.wake(SUB, seq=4)  # an event for the record the loop has: no check
        await trio.sleep(1)
        assert len(script.times) == 1
        wakeups.wake(SUB, seq=5)  # the tag moved on: check now
        await trio.sleep(0.1)  # (the clock moves only once every task waits)
        assert len(script.times) == 2 and script.times[1] == 3.0 + script.times[0]
        wakeups.wake(SUB)  # during the check: kept, and checked again right after it
        await trio.sleep(1)
        assert len(script.times) == 3 and script.times[2] - script.times[1] == 0.5
        nursery.cancel_scope.cancel()
