"""The upload side: which peers' piece requests to serve now. Sans-I/O, like the planner.

Requests wait in one queue per peer; `serve(now)` starts as many as the upload slots and the
upload cap allow, each time from the peer with the fewest uploads running (then the one whose
oldest request waited longest), so one greedy peer cannot starve the others. A full queue
refuses at once: the requester then asks another peer or the store, rather than waiting here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from aetherfs.errors import InvalidInput
from aetherfs.planner.bandwidth import BandwidthPolicy
from aetherfs.planner.ids import PeerId, PieceRef


@dataclass(frozen=True, slots=True)
class UploadRequest:
    peer: PeerId
    piece: PieceRef
    size: int


@dataclass(frozen=True, slots=True)
class UploadConfig:
    slots: int = 8  # uploads running at once, all peers together
    per_peer: int = 2  # uploads running at once to one peer
    queue_per_peer: int = 16  # requests kept waiting per peer; more are refused

    def __post_init__(self) -> None:
        if min(self.slots, self.per_peer, self.queue_per_peer) < 1:
            raise InvalidInput("upload slots and queues must be at least 1")


@dataclass(slots=True)
class _Queue:
    waiting: deque[tuple[int, UploadRequest]] = field(default_factory=deque)
    running: set[PieceRef] = field(default_factory=set)
    bytes_sent: int = 0


class UploadScheduler:
    def __init__(
        self,
        config: UploadConfig | None = None,
        bandwidth: BandwidthPolicy | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or UploadConfig()
        policy = bandwidth or BandwidthPolicy()
        self._bucket = policy.bucket(policy.peer_upload, now)
        self._queues: dict[PeerId, _Queue] = {}
        self._running = 0
        self._seq = 0
        self._timer: float | None = None

    def request(self, peer: PeerId, piece: PieceRef, size: int) -> bool:
        """Queue a request; False: refused (queue full, or already asked), answer it so."""
        queue = self._queues.setdefault(peer, _Queue())
        duplicate = piece in queue.running or any(r.piece == piece for _, r in queue.waiting)
        if duplicate or len(queue.waiting) >= self.config.queue_per_peer:
            return False
        self._seq += 1
        queue.waiting.append((self._seq, UploadRequest(peer, piece, size)))
        return True

    def cancel(self, peer: PeerId, piece: PieceRef) -> None:
        """The requester no longer wants it: dropped if waiting (a running upload ends when the
        transport stops sending and calls `finished`)."""
        queue = self._queues.get(peer)
        if queue is not None:
            queue.waiting = deque(item for item in queue.waiting if item[1].piece != piece)

    def finished(self, peer: PeerId, piece: PieceRef) -> None:
        queue = self._queues.get(peer)
        if queue is not None and piece in queue.running:
            queue.running.discard(piece)
            self._running -= 1

    def peer_gone(self, peer: PeerId) -> None:
        queue = self._queues.pop(peer, None)
        if queue is not None:
            self._running -= len(queue.running)

    def serve(self, now: float) -> list[UploadRequest]:
        """The requests to start sending now."""
        started: list[UploadRequest] = []
        self._timer = None
        while self._running < self.config.slots:
            ready = [
                (len(q.running), q.waiting[0][0], peer)
                for peer, q in self._queues.items()
                if q.waiting and len(q.running) < self.config.per_peer
            ]
            if not ready:
                break
            if not self._bucket.ready(now):
                self._timer = self._bucket.ready_at(now)
                break
            queue = self._queues[min(ready)[2]]
            _, request = queue.waiting.popleft()
            self._bucket.take(now, request.size)
            queue.running.add(request.piece)
            queue.bytes_sent += request.size
            self._running += 1
            started.append(request)
        return started

    def get_timer(self) -> float | None:
        """When `serve` could start more (the cap refilled); None: after the next event."""
        return self._timer

    def bytes_sent(self) -> dict[PeerId, int]:
        return {peer: q.bytes_sent for peer, q in sorted(self._queues.items())}
