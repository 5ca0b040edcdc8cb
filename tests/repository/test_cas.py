"""The one compare-and-swap helper: a loser waits a jittered, growing time, and no update is
lost however many writers race (on the local store's flock CAS and on SeaweedFS)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from aetherfs.errors import Conflict, InvalidInput
from aetherfs.repository.cas import Backoff, compare_and_swap
from aetherfs.store import open_store
from aetherfs.store.base import Store
from aetherfs.store.local import LocalStore
from tests.fixtures.seaweedfs import SeaweedFS

KEY = "hub/test/counter.json"


class Draws:
    """An injected uniform(a, b): records each window asked for, answers a fixed share of it."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.windows: list[tuple[float, float]] = []

    def __call__(self, low: float, high: float) -> float:
        self.windows.append((low, high))
        return low + (high - low) * self.share


def test_a_loser_sleeps_a_jittered_growing_time(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    draws = Draws(0.5)
    backoff = Backoff(attempts=10, first=0.02, cap=0.05, uniform=draws)
    calls = 0

    def change(raw: bytes | None) -> tuple[bytes, int]:
        nonlocal calls
        calls += 1
        if calls <= 3:  # another writer gets in between our read and our write, three times
            store.put(KEY, f"other {calls}".encode())
        return b"ours", calls

    started = time.monotonic()
    assert compare_and_swap(store, KEY, change, "busy", backoff) == 4
    slept = time.monotonic() - started
    assert store.get(KEY) == b"ours"
    # Each window doubles from `first` up to `cap`; the wait is drawn in it, not fixed.
    assert draws.windows == [(0.0, 0.02), (0.0, 0.04), (0.0, 0.05)]
    assert slept >= 0.01 + 0.02 + 0.025  # half of each window: really slept, not skipped


def test_full_jitter_spreads_waits_and_gives_up_in_words(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    waits = [Backoff(uniform=lambda a, b, s=s: a + (b - a) * s).wait(3) for s in (0.1, 0.9)]
    assert waits[0] != waits[1]  # two losers of one race do not retry in step

    def always_lose(raw: bytes | None) -> tuple[bytes, None]:
        store.put(KEY, f"someone else at {time.monotonic()}".encode())  # a new version
        return b"ours", None

    with pytest.raises(Conflict, match="being changed by many"):
        compare_and_swap(
            store, KEY, always_lose, "being changed by many", Backoff(attempts=3, first=0.001)
        )


def test_an_error_of_the_change_is_not_retried(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    calls = 0

    def refuse(raw: bytes | None) -> tuple[bytes, None]:
        nonlocal calls
        calls += 1
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        compare_and_swap(store, KEY, refuse, "busy")
    assert calls == 1


def _race(store: Store, writers: int) -> None:
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def add(name: str) -> None:
        def append(raw: bytes | None) -> tuple[bytes, None]:
            names = json.loads(raw) if raw is not None else []
            return json.dumps([*names, name]).encode(), None

        try:
            start.wait()
            compare_and_swap(store, KEY, append, "busy")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=add, args=(f"w{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert sorted(json.loads(store.get(KEY))) == sorted(f"w{i}" for i in range(writers))


def test_concurrent_writers_all_land_on_the_local_store(tmp_path: Path) -> None:
    _race(LocalStore(tmp_path / "store"), 16)


def test_concurrent_writers_all_land_on_s3(seaweedfs: SeaweedFS) -> None:
    _race(open_store(seaweedfs.store_url(), seaweedfs.endpoint), 16)
