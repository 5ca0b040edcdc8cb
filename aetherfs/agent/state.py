"""What the agent knows about itself, for the status API, `aetherfs status` and /metrics.

Written from the trio thread and, for fetch counters, from fetch worker threads (under a
lock). Readers take a `snapshot()`: a plain JSON-able dict.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from aetherfs import __version__
from aetherfs.agent.config import AgentConfig, Subscription

SOURCES = ("local", "cache", "peers", "store")


@dataclass(slots=True)
class Progress:
    manifest: str
    files_total: int = 0
    files_linked: int = 0  # unchanged files hard-linked from a version already here
    bytes_total: int = 0  # plaintext bytes to write
    bytes_done: int = 0
    blocks_total: int = 0
    blocks_missing: int = 0  # not in the cache when the download started
    started: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        done = self.bytes_done / self.bytes_total if self.bytes_total else 1.0
        return {
            "manifest": self.manifest,
            "files_total": self.files_total,
            "files_linked": self.files_linked,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "blocks_total": self.blocks_total,
            "blocks_missing": self.blocks_missing,
            "fraction": round(done, 4),
            "started": self.started,
        }


@dataclass(slots=True)
class ChannelState:
    subscription: Subscription
    state: str = "starting"  # starting, idle, waiting, downloading, checking, retrying
    live_manifest: str | None = None
    live_path: str | None = None
    live_since: float | None = None
    remote_manifest: str | None = None
    progress: Progress | None = None
    last_check: float | None = None
    last_error: str | None = None
    last_error_time: float | None = None
    retries: int = 0
    next_retry: float | None = None
    versions_made_live: int = 0
    files_repaired: int = 0  # of retained versions, before they went live again
    waiting: str | None = None  # why the channel is waited for (not published yet), not an error

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription": str(self.subscription),
            "dataset": self.subscription.dataset,
            "channel": self.subscription.channel,
            "state": self.state,
            "live": (
                {"manifest": self.live_manifest, "path": self.live_path, "since": self.live_since}
                if self.live_manifest
                else None
            ),
            "remote_manifest": self.remote_manifest,
            "progress": self.progress.to_json() if self.progress else None,
            "last_check": self.last_check,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "retries": self.retries,
            "next_retry": self.next_retry,
            "versions_made_live": self.versions_made_live,
            "files_repaired": self.files_repaired,
            "waiting": self.waiting,
        }


@dataclass(frozen=True, slots=True)
class VersionLive:
    """Event: a channel now points at a new version."""

    dataset: str
    channel: str
    manifest_id: str
    path: str
    time: float


class AgentState:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started = time.time()
        self.channels = {sub: ChannelState(sub) for sub in config.subscriptions}
        self._lock = threading.Lock()
        self.bytes_by_source = dict.fromkeys(SOURCES, 0)
        self.blocks_by_source = dict.fromkeys(SOURCES, 0)
        self.file_reads: dict[tuple[str, str], int] = {}  # (dataset:channel, path) -> reads
        self.cache_bytes = 0
        self.cache_blocks = 0
        self.cache_evicted_bytes = 0
        self.cache_corrupt_dropped = 0
        self.cache_disk_bytes = 0  # allocated on disk under the cache directory
        self.tree_bytes = 0  # allocated on disk by the versions' trees, each inode once
        self.served_view: Callable[[], dict[str, int]] | None = None  # blocks served, by source
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.store_reachable: bool | None = None
        self.versions: list[dict[str, Any]] = []
        self.hub_report: dict[str, Any] = {}
        self.hub_watch: dict[str, dict[str, Any]] = {}  # dataset -> its watch stream's state
        self._listeners: set[trio.MemorySendChannel[VersionLive]] = set()
        # Peer exchange's part of the status (agent/peers.py): peer_exchange, peers, fetches.
        self.peer_view: Callable[[], dict[str, Any]] | None = None

    # Counters from fetch threads -------------------------------------------------------
    def count_fetch(self, source: str, size: int, blocks: int = 1) -> None:
        with self._lock:
            self.bytes_by_source[source] = self.bytes_by_source.get(source, 0) + size
            self.blocks_by_source[source] = self.blocks_by_source.get(source, 0) + blocks

    def count_swarm(self, from_cache: int, from_peers: int, from_store: int) -> None:
        """What a version's swarm fetch found in the cache and moved into it (the build then
        reads all of it there, uncounted)."""
        with self._lock:
            for source, size in (
                ("cache", from_cache),
                ("peers", from_peers),
                ("store", from_store),
            ):
                self.bytes_by_source[source] += size

    def count_built(self, source: str, size: int) -> None:
        """A build's fetch after a swarm fetch: only what the swarm left (evicted meanwhile)."""
        if source != "cache":
            self.count_fetch(source, size)

    def add_progress(self, progress: Progress, placed: int) -> None:
        with self._lock:
            progress.bytes_done += placed

    def count_read(self, ref: str, path: str) -> None:
        with self._lock:
            key = (ref, path)
            self.file_reads[key] = self.file_reads.get(key, 0) + 1

    # Errors ----------------------------------------------------------------------------
    def error(self, channel: ChannelState | None, message: str) -> None:
        now = time.time()
        self.last_error, self.last_error_time = message, now
        if channel is not None:
            channel.last_error, channel.last_error_time = message, now

    # Events ----------------------------------------------------------------------------
    def listen(self) -> trio.MemoryReceiveChannel[VersionLive]:
        send, receive = trio.open_memory_channel[VersionLive](64)
        self._listeners.add(send)
        return receive

    def announce(self, event: VersionLive) -> None:
        for send in list(self._listeners):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                send.close()  # a listener this far behind is dropped; it can reconnect
                self._listeners.discard(send)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._listeners.discard(send)

    # Views -----------------------------------------------------------------------------
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self.channels)

    def channel(self, sub: Subscription) -> dict[str, Any] | None:
        channel = self.channels.get(sub)
        if channel is None:
            return None
        with self._lock:
            return channel.to_json()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_source = dict(self.bytes_by_source)
            blocks = dict(self.blocks_by_source)
            reads = [
                {"ref": ref, "path": path, "reads": n}
                for (ref, path), n in sorted(self.file_reads.items())
            ]
            channels = [c.to_json() for c in self.channels.values()]
        c = self.config
        swarm = (
            self.peer_view()
            if self.peer_view is not None
            else {"peer_exchange": {"enabled": False, "problem": "off"}, "peers": [], "fetches": []}
        )
        return {
            "agent": {
                "version": __version__,
                "pid": os.getpid(),
                "data_root": str(c.data_root),
                "store": c.store_url,
                "started": self.started,
                "uptime": round(time.time() - self.started, 3),
                "store_reachable": self.store_reachable,
                "mode": "read-only" if c.read_only else "writer",
            },
            "subscriptions": channels,
            "bytes_by_source": by_source,
            "blocks_by_source": blocks,
            "cache": {
                "dir": str(c.cache_dir),
                "bytes": self.cache_bytes,
                "blocks": self.cache_blocks,
                "limit": c.cache_limit,
                "evicted_bytes": self.cache_evicted_bytes,
                "corrupt_dropped": self.cache_corrupt_dropped,
                "disk_bytes": self.cache_disk_bytes,
            },
            "trees": {"bytes": self.tree_bytes},
            "served": self.served_view() if self.served_view is not None else {},
            "peer_exchange": swarm["peer_exchange"],
            "peers": swarm["peers"],
            "fetches": swarm["fetches"],
            "versions": self.versions,
            "file_reads": reads,
            "hub_report": self.hub_report or None,
            "hub_watch": {k: dict(v) for k, v in self.hub_watch.items()} or None,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
        }
