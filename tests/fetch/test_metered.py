"""Metered sources: counted, stopped on request, and held to a byte rate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aetherfs.core.blocks import seal_block
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.metered import AgentSource, RateLimit, Stopped
from aetherfs.fetch.sources import CacheSource


def test_a_source_counts_what_it_delivers_and_refuses_once_stopping(tmp_path: Path) -> None:
    sealed = [seal_block(f"block {i}".encode() * 100, b"s" * 32) for i in range(3)]
    cache = BlockCache(tmp_path / "c", limit=10**9)
    cache.put_many([(b.ref.id, b.stored) for b in sealed[:2]])
    counted: list[tuple[str, int]] = []
    stop = threading.Event()
    source = AgentSource(CacheSource(cache), lambda name, n: counted.append((name, n)), stop)

    found = source.fetch([b.ref for b in sealed])

    assert set(found) == {b.ref.id for b in sealed[:2]}
    assert sorted(counted) == sorted(("cache", len(b.stored)) for b in sealed[:2])
    stop.set()
    with pytest.raises(Stopped):
        source.fetch([sealed[0].ref])
    cache.close()


def test_the_rate_limit_spaces_bytes_and_gives_way_to_a_stop() -> None:
    limit = RateLimit(rate=100_000)
    stop = threading.Event()
    started = time.monotonic()
    for _ in range(3):
        limit.take(10_000, stop)  # 0.1 s of budget each; the first goes at once
    assert time.monotonic() - started >= 0.19

    limit.take(100_000, stop)  # books one second ahead
    stop.set()
    waited = time.monotonic()
    with pytest.raises(Stopped):
        limit.take(1, stop)
    assert time.monotonic() - waited < 0.5
