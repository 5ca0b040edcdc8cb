"""Tell subscribers the moment a tag moves.

One poller per watched dataset re-reads its tags from the store every `poll_interval` (so
moves made through another hub over the same bucket, or straight on the store, are seen) and
at once when this hub moved one itself (`kick`). Subscribers share the poller; each gets the
current heads first and then every change, in seq order per tag, never a duplicate.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from aetherfs.errors import echo
from aetherfs.hub.errors import Overloaded

Heads = dict[str, tuple[int, str]]  # tag -> (seq, manifest hex)
ReadHeads = Callable[[str], Heads]


@dataclass(frozen=True, slots=True)
class TagEvent:
    dataset: str
    tag: str
    seq: int
    manifest: str

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "tag": self.tag,
            "seq": self.seq,
            "manifest": self.manifest,
        }


class Subscription:
    """One subscriber's queue. Drop events it has already seen (seq per tag only grows)."""

    def __init__(self, feed: _Feed, tags: frozenset[str] | None, buffer: int) -> None:
        self._feed = feed
        self._tags = tags
        self._send, self._receive = trio.open_memory_channel[TagEvent](buffer)
        self._seen: dict[str, int] = {}
        self.overflowed = False

    def offer(self, event: TagEvent) -> None:
        if self._tags is not None and event.tag not in self._tags:
            return
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            # A subscriber this far behind is cut off; it reconnects and gets the heads anew.
            self.overflowed = True
            self._send.close()
        except trio.ClosedResourceError:
            pass

    async def next(self, timeout: float = math.inf) -> TagEvent | None:
        """The next new event, or None after `timeout` seconds of quiet.

        Raises trio.EndOfChannel when the subscription was cut off or closed.
        """
        with trio.move_on_after(timeout):
            while True:
                event = await self._receive.receive()
                if event.seq > self._seen.get(event.tag, 0):
                    self._seen[event.tag] = event.seq
                    return event
        return None

    def close(self) -> None:
        self._send.close()
        self._feed.subscribers.discard(self)
        self._feed.wake.set()


@dataclass(slots=True)
class _Feed:
    dataset: str
    subscribers: set[Subscription] = field(default_factory=set)
    heads: Heads | None = None
    wake: trio.Event = field(default_factory=trio.Event)


class WatchHub:
    def __init__(
        self, read_heads: ReadHeads, limiter: trio.CapacityLimiter, poll_interval: float = 1.0
    ) -> None:
        self.read_heads = read_heads
        self.limiter = limiter
        self.poll_interval = poll_interval
        self._feeds: dict[str, _Feed] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the pollers; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def subscribe(
        self, dataset: str, tags: frozenset[str] | None = None, buffer: int = 256
    ) -> Subscription:
        """Register a subscriber (call from trio); its first events are the current heads."""
        if self._nursery is None:
            raise RuntimeError("WatchHub.run is not running")
        feed = self._feeds.get(dataset)
        if feed is None:
            feed = self._feeds[dataset] = _Feed(dataset)
            self._nursery.start_soon(self._poll, feed)
        subscription = Subscription(feed, tags, buffer)
        feed.subscribers.add(subscription)
        if feed.heads is not None:
            for tag, (seq, manifest) in sorted(feed.heads.items()):
                subscription.offer(TagEvent(dataset, tag, seq, manifest))
        feed.wake.set()  # a fresh read for the newcomer
        return subscription

    def kick(self, dataset: str) -> None:
        """This hub just moved a tag of `dataset`: poll now rather than at the next tick."""
        feed = self._feeds.get(dataset)
        if feed is not None:
            feed.wake.set()

    async def _poll(self, feed: _Feed) -> None:
        try:
            while feed.subscribers:
                feed.wake = trio.Event()
                try:
                    heads = await trio.to_thread.run_sync(
                        self.read_heads, feed.dataset, limiter=self.limiter
                    )
                except Exception:
                    heads = None  # store hiccup: keep the last heads, try again next tick
                if heads is not None:
                    for tag, (seq, manifest) in sorted(heads.items()):
                        old = (feed.heads or {}).get(tag)
                        if old is None or old[0] < seq or feed.heads is None:
                            event = TagEvent(feed.dataset, tag, seq, manifest)
                            for subscription in list(feed.subscribers):
                                subscription.offer(event)
                    feed.heads = heads
                with trio.move_on_after(self.poll_interval):
                    await feed.wake.wait()
        finally:
            if self._feeds.get(feed.dataset) is feed:
                del self._feeds[feed.dataset]


class StreamQuota:
    """Bound the streams open at once: per caller, and in all. Thread-safe.

    A gRPC Watch stream holds one of the server's threads for as long as it is open, so
    without a bound one reader's token can take every thread and no other call is served.
    """

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    def acquire(self, caller: str) -> None:
        """Count one more stream for `caller`, or raise Overloaded."""
        with self._lock:
            if self._held[caller] >= self.per_caller:
                raise Overloaded(
                    f"{echo(caller)} already holds {self.per_caller} watch streams, the most "
                    "one caller may: close one, or watch several tags in one stream"
                )
            if self._held.total() >= self.total:
                raise Overloaded(f"the hub serves {self.total} watch streams already; retry later")
            self._held[caller] += 1

    def release(self, caller: str) -> None:
        with self._lock:
            self._held[caller] -= 1
            if self._held[caller] <= 0:
                del self._held[caller]
