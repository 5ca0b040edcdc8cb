"""A channel loop's decisions (`ChannelDecisions`), pure: explicit times, a seeded random source,
no store, no process."""

from __future__ import annotations

import random

import pytest

from aetherfs.agent.decisions import (
    IDLE,
    RETRYING,
    WAITING,
    ChannelDecisions,
    MakeLive,
    Timing,
    UpToDate,
    Wake,
)
from aetherfs.core.ids import ManifestId

POLL, RETRY_MAX = 10.0, 60.0
V1, V2 = ManifestId(b"\x01" * 32), ManifestId(b"\x02" * 32)


def decisions(seed: int = 1, now: float = 0.0) -> ChannelDecisions:
    return ChannelDecisions(Timing(POLL, RETRY_MAX), random.Random(seed), now)


def test_the_first_check_is_due_at_once_and_only_once() -> None:
    d = decisions(now=5.0)
    assert d.get_timer() == 5.0
    assert not d.handle_timer(4.9)
    assert d.handle_timer(5.0)
    assert d.get_timer() is None  # running: its outcome sets the next timer
    assert not d.handle_timer(100.0)


def test_polls_are_jittered_so_a_fleet_started_together_drifts_apart() -> None:
    fleet = [decisions(seed) for seed in range(200)]
    for d in fleet:
        assert d.handle_timer(0.0)
    nexts = [d.handle_checked(0.0) for d in fleet]
    assert all(n.state == IDLE and n.attempt == 0 for n in nexts)
    times = [n.at for n in nexts]
    assert all(POLL * 0.8 <= t <= POLL * 1.2 for t in times)
    # Spread over the window, not in one burst: no tenth of it holds more than a fifth.
    assert max(times) - min(times) > POLL * 0.3
    buckets = [
        sum(1 for t in times if POLL * (0.8 + 0.04 * i) <= t < POLL * (0.84 + 0.04 * i))
        for i in range(10)
    ]
    assert max(buckets) < 40
    # The mean interval is still the configured one.
    assert abs(sum(times) / len(times) - POLL) < 0.3


def test_a_missing_channel_is_waited_for_at_the_poll_interval_not_backed_off() -> None:
    d, now = decisions(), 0.0
    for _ in range(30):
        assert d.handle_timer(now)
        nxt = d.handle_missing(now)
        assert nxt.state == WAITING and nxt.attempt == 0
        assert POLL * 0.8 <= nxt.at - now <= POLL * 1.2
        now = nxt.at
    assert d.state == WAITING and d.failures == 0


def test_failures_back_off_doubling_to_the_cap_jittered_then_reset() -> None:
    d, now = decisions(), 0.0
    waits = []
    for attempt in range(1, 10):
        assert d.handle_timer(now)
        nxt = d.handle_failure(now)
        assert nxt.state == RETRYING and nxt.attempt == attempt
        ceiling = min(RETRY_MAX, POLL * 2 ** (attempt - 1))
        assert ceiling / 2 <= nxt.at - now <= ceiling
        waits.append(nxt.at - now)
        now = nxt.at
    assert max(waits) <= RETRY_MAX and waits[-1] >= RETRY_MAX / 2
    assert d.handle_timer(now)
    nxt = d.handle_checked(now)
    assert nxt.attempt == 0 and nxt.at - now <= POLL * 1.2
    assert d.handle_timer(nxt.at)
    assert d.handle_failure(nxt.at).at - nxt.at <= POLL  # the backoff starts over


def test_the_record_decides_build_check_or_nothing() -> None:
    d = decisions()
    assert d.handle_record(3, V1, live=V1, on_disk=True) == UpToDate()
    assert d.handle_record(4, V2, live=V1, on_disk=False) == MakeLive(V2, build=True)
    assert d.handle_record(5, V1, live=V2, on_disk=True) == MakeLive(V1, build=False)
    assert d.highest_seq == 5
    d.handle_record(2, V1, live=V1, on_disk=True)  # (the trust store refuses older ones)
    assert d.highest_seq == 5


@pytest.mark.parametrize(
    ("wake", "due"),
    [(Wake(seq=5), False), (Wake(seq=4), False), (Wake(seq=6), True), (Wake(look=True), True)],
)
def test_a_wake_up_makes_a_check_due_only_if_it_may_change_something(wake: Wake, due: bool) -> None:
    d = decisions()
    assert d.handle_timer(0.0)
    d.handle_record(5, V1, live=V1, on_disk=True)
    d.handle_checked(0.0)
    assert d.handle_wake(wake, 3.0) is due
    assert d.handle_timer(3.0) is due


def test_wake_ups_merge() -> None:
    assert Wake(seq=3).merge(Wake(seq=7)).merge(Wake(look=True)) == Wake(look=True, seq=7)


def test_the_decisions_read_no_clock_and_do_no_io() -> None:
    """So the fleet simulator can drive them on its own clock, as it drives the planner."""
    import ast
    from pathlib import Path

    import aetherfs.agent.decisions as module

    names = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    assert names <= {"__future__", "math", "random", "dataclasses", "aetherfs.core.ids"}, names
