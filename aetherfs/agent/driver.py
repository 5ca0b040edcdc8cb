"""The trio driver of a channel loop's decisions: wait for the timer or a wake-up, run the check
when the decisions say it is due, hand them its outcome. Everything it decides is in
`ChannelDecisions`; this reads `trio.current_time()` and sleeps, nothing more (so tests run it
on trio's `MockClock`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from aetherfs.agent.config import Subscription
from aetherfs.agent.decisions import ChannelDecisions, Next
from aetherfs.agent.wakeups import Wakeups

# A check: True once the channel's record was seen (and acted on), False when the channel
# does not exist yet; it raises when it cannot tell.
Check = Callable[[], Awaitable[bool]]
# Told each outcome: when the loop looks next, and the failure if the check raised.
Report = Callable[[Next, Exception | None], None]


async def drive(
    decisions: ChannelDecisions, wakeups: Wakeups, sub: Subscription, check: Check, report: Report
) -> None:
    while True:
        wake = await wakeups.wait(sub, decisions.get_timer())
        now = trio.current_time()
        if wake is not None:
            decisions.handle_wake(wake, now)
        if not decisions.handle_timer(now):
            continue
        try:
            found = await check()
        except Exception as exc:  # a daemon logs, reports, retries: nothing ends the loop
            report(decisions.handle_failure(trio.current_time()), exc)
            continue
        now = trio.current_time()
        report(decisions.handle_checked(now) if found else decisions.handle_missing(now), None)
