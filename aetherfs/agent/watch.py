"""Tag watchers: how the agent learns that a channel moved.

`StorePoller` reads the signed tag record from the store, or through a hub (verified by
`Repository` either way). Through a hub, `HubStreamWatcher` follows the hub's watch stream and
wakes a channel's loop when its tag moves, so the poll interval only matters when the stream
is down.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import stamina
import trio

from aetherfs.agent.config import AgentConfig, Subscription
from aetherfs.agent.log import Logger
from aetherfs.agent.wakeups import Wakeups
from aetherfs.core.tags import TagRecord
from aetherfs.errors import AetherError, StoreUnavailable
from aetherfs.repository import Repository, StoreRepository, open_keyring
from aetherfs.repository.cas import Backoff
from aetherfs.store import open_store


class TagWatcher(Protocol):
    async def current(self, sub: Subscription) -> TagRecord:
        """The verified record the channel holds now (raises AetherError when it cannot tell)."""
        ...


class RepoHandle:
    """Opens the store and keyring on first use, and again after a failure to open."""

    def __init__(self, config: AgentConfig, limiter: trio.CapacityLimiter) -> None:
        self.config = config
        self.limiter = limiter
        self._repo: Repository | None = None
        self._lock = trio.Lock()
        self.opener: Callable[[], Repository] = self._open
        self.on_open: list[Callable[[Repository], None]] = []  # told of each repository opened

    def _open(self) -> Repository:
        c = self.config
        store = open_store(c.store_url, c.s3_endpoint, c.s3_region)
        keyring = open_keyring(store, c.keys_dir, c.keys_path, create=False)
        return StoreRepository(store, keyring)

    async def get(self) -> Repository:
        async with self._lock:
            if self._repo is None:
                self._repo = await trio.to_thread.run_sync(self.opener, limiter=self.limiter)
                for hook in self.on_open:
                    hook(self._repo)
            return self._repo


class StorePoller:
    def __init__(self, repos: RepoHandle) -> None:
        self.repos = repos

    async def current(self, sub: Subscription) -> TagRecord:
        repo = await self.repos.get()
        signed = await trio.to_thread.run_sync(
            repo.resolve, sub.dataset, sub.channel, limiter=self.repos.limiter
        )
        return signed.record


@dataclass(frozen=True)
class HubLink:
    """How to reach the hub the agent works through (for its watch stream)."""

    url: str
    token: str | None = None
    ca_file: str | None = None


WATCH_RETRY_FIRST = 0.5  # seconds: the first reconnect's window; doubles per failure
WATCH_RETRY_MAX = 30.0
WATCH_BACKOFF = Backoff(attempts=0, first=WATCH_RETRY_FIRST, cap=WATCH_RETRY_MAX)
WATCH_READ_TIMEOUT = 45.0  # the hub pings every 15 s: three missed pings mean a dead stream


class HubStreamWatcher:
    """Follows the hub's watch stream (server-sent events) for each subscribed dataset.

    An event never makes anything live by itself: it wakes the channel's loop (through
    `Wakeups`, with the seq it saw), which reads the signed tag record and verifies it as
    always. So the stream only decides *when* to look. When the stream drops, the loops are
    woken at each reconnect attempt (polling, with the reconnect's exponential backoff), and the
    first events after a reconnect are the current heads, so a move made while the stream was
    down is seen as soon as it is back. A dataset nobody published yet is watched like any
    other (the hub streams a granted dataset before it exists), so its first publish wakes
    the loop at once.
    """

    def __init__(self, wakeups: Wakeups, hub: HubLink, log: Logger) -> None:
        self.wakeups = wakeups
        self.hub = hub
        self.log = log
        self.status: dict[str, dict[str, Any]] = {}

    def tags_of(self, dataset: str) -> list[str]:
        return sorted({s.channel for s in self.wakeups.subscriptions if s.dataset == dataset})

    async def run(self) -> None:
        datasets = sorted({sub.dataset for sub in self.wakeups.subscriptions})
        headers = {"Authorization": f"Bearer {self.hub.token}"} if self.hub.token else {}
        verify: Any = self.hub.ca_file if self.hub.ca_file else True
        timeout = httpx.Timeout(10.0, read=WATCH_READ_TIMEOUT)
        async with (
            httpx.AsyncClient(
                base_url=self.hub.url.rstrip("/"), headers=headers, timeout=timeout, verify=verify
            ) as client,
            trio.open_nursery() as nursery,
        ):
            for dataset in datasets:
                nursery.start_soon(self.follow, client, dataset)

    async def follow(self, client: httpx.AsyncClient, dataset: str) -> None:
        log = self.log
        status: dict[str, Any] = {
            "connected": False,
            "since": None,
            "events": 0,
            "last_event": None,
            "last_error": None,
            "retries": 0,
            "next_retry": None,
        }
        self.status[dataset] = status
        tags = self.tags_of(dataset)
        path = f"/v1/datasets/{quote(dataset, safe='/')}/-/watch"
        failures = 0

        def dropped(exc: Exception) -> float | bool:
            """After a failure: report it, poll meanwhile, and say how long to wait (a
            jittered, doubling window, so a fleet whose hub restarted does not reconnect in
            step)."""
            nonlocal failures
            if not isinstance(exc, httpx.HTTPError | AetherError):
                return False  # not a connection fault: not ours to retry
            failures += 1
            delay = WATCH_BACKOFF.wait(failures)
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            status.update(
                connected=False,
                last_error=message,
                retries=failures,
                next_retry=time.time() + delay,
            )
            log.warning(
                "hub.watch.dropped",
                dataset=dataset,
                error=message,
                retry_in=round(delay, 3),
                attempt=failures,
            )
            # Fallback while the stream is down: poll now, then again at each reconnect.
            self.wakeups.wake_dataset(dataset)
            return delay

        # Reconnects through stamina, as every I/O retry of the project (repository/cas.py).
        async for attempt in stamina.retry_context(on=dropped, attempts=None, timeout=None):
            with attempt:
                async with client.stream("GET", path, params={"tag": tags}) as response:
                    if response.status_code != 200:
                        body = (await response.aread())[:300].decode(errors="replace")
                        raise StoreUnavailable(
                            f"the hub's watch stream answered {response.status_code}: {body}"
                        )
                    status.update(connected=True, since=time.time(), retries=0, next_retry=None)
                    status["last_error"] = None
                    failures = 0
                    log.info("hub.watch.connected", dataset=dataset, hub=self.hub.url)
                    async for event in sse_events(response.aiter_lines()):
                        self.on_event(dataset, event)
                raise StoreUnavailable("the hub closed its watch stream")

    def on_event(self, dataset: str, event: dict[str, str]) -> None:
        if event.get("event") != "tag":
            return
        try:
            doc = json.loads(event.get("data", ""))
            tag, seq = str(doc["tag"]), int(doc["seq"])
        except (ValueError, KeyError, TypeError):
            self.log.warning("hub.watch.bad_event", dataset=dataset, data=event.get("data"))
            return
        status = self.status[dataset]
        status["events"] += 1
        status["last_event"] = time.time()
        if tag in self.tags_of(dataset):
            self.log.info("hub.watch.moved", dataset=dataset, tag=tag, seq=seq)
            # The loop decides whether seq is newer than the record it already has.
            self.wakeups.wake_dataset(dataset, seq, tag)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, str]]:
    """Server-sent events as dicts of their fields (`event`, `data`, `id`); comments skipped."""
    fields: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in fields:
                fields.setdefault("event", "message")
                yield fields
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data" and "data" in fields:
            fields["data"] += "\n" + value
        else:
            fields[name] = value
