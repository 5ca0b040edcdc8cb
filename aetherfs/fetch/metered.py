"""Block sources counted, stoppable and optionally rate limited, as the agent uses them.

They wrap any `aetherfs.fetch.sources.BlockSource`, so peers slot in beside the cache and the
store by adding one more entry to the list `fetch_sources` returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId
from aetherfs.errors import AetherError
from aetherfs.fetch.cache import BlockCache
from aetherfs.fetch.sources import BlockSource, CacheSource, StoreSource
from aetherfs.repository import Repository


class Stopped(AetherError):
    """The agent is shutting down; the download stops and resumes at the next start."""


class RateLimit:
    """A token bucket shared by the fetch threads: at most `rate` bytes per second."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, size: int, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + size / self.rate
        if start > now and stop.wait(start - now):
            raise Stopped("the agent is stopping")


class AgentSource:
    """Counts what a source delivers and refuses to start new work once stopping."""

    def __init__(
        self,
        inner: BlockSource,
        on_fetch: Callable[[str, int], None],
        stop: threading.Event,
        limit: RateLimit | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.on_fetch = on_fetch
        self.stop = stop
        self.limit = limit

    def fetch(self, refs: Sequence[BlockRef]) -> Mapping[BlockId, bytes | memoryview]:
        if self.stop.is_set():
            raise Stopped("the agent is stopping")
        found = self.inner.fetch(refs)
        for stored in found.values():
            if self.limit is not None:
                self.limit.take(len(stored), self.stop)
            self.on_fetch(self.name, len(stored))
        return found


def fetch_sources(
    cache: BlockCache,
    repo: Repository,
    dataset: str,
    on_fetch: Callable[[str, int], None],
    stop: threading.Event,
    store_limit: RateLimit | None,
) -> list[BlockSource]:
    """Cheapest first: the local cache, then (later) peers, then the store."""
    return [
        AgentSource(CacheSource(cache), on_fetch, stop),
        AgentSource(StoreSource(repo, dataset), on_fetch, stop, store_limit),
    ]
