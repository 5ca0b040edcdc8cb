"""A LAN model with links: real planners and upload schedulers, bytes shared fairly.

Every host has an uplink and a downlink (12.5 MB/s each: 100 Mbit/s); the store has one
uplink that all its reads share. A transfer is a flow over two links (the sender's uplink, the
receiver's downlink) and the flows on a link share it max-min fairly (what many TCP flows do,
roughly), recomputed whenever a flow starts or ends. Store reads are never cancelled (the
engine cannot call a ranged GET back: its bytes are sent anyway); a peer's upload stops when
the requester's CANCEL reaches it. What the store sent is the sum of its reads' lengths.

Agents start (see the channel move, announce an empty bitfield, tell their planner) at the
times given; everyone is connected to everyone from time 0. Announcements take `latency`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aetherfs.planner import (
    STORE,
    Action,
    Assign,
    Bitfield,
    Cancel,
    Event,
    FetchPlanner,
    PeerBitfield,
    PeerHave,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    PieceRef,
    PieceTable,
    PlannerConfig,
    UploadScheduler,
)
from tests.planner.helpers import peer

LINK = 12_500_000.0  # 100 Mbit/s in bytes per second

Link = tuple[str, int]  # ("up" | "down", host); the store's uplink is ("up", -1)


@dataclass(eq=False, slots=True)
class _Flow:
    src: int  # -1: the store
    dst: int
    piece: PieceRef
    remaining: float
    rate: float = 0.0

    @property
    def links(self) -> tuple[Link, Link]:
        return (("up", self.src), ("down", self.dst))


@dataclass
class LinkLan:
    table: PieceTable
    agents: int
    config: PlannerConfig = field(default_factory=PlannerConfig)
    store_rate: float = LINK
    link_rate: float = LINK
    latency: float = 0.001  # one way, announcements and requests
    store_latency: float = 0.02  # a GET's first byte
    uplink: dict[int, float] = field(default_factory=dict)  # slower uplinks by agent
    silent: set[int] = field(default_factory=set)  # never answer peer requests
    stuck: set[int] = field(default_factory=set)  # their store reads never finish

    def __post_init__(self) -> None:
        self.ids = [peer(n) for n in range(self.agents)]
        self.index = {pid: n for n, pid in enumerate(self.ids)}
        self.planners = [FetchPlanner(pid, self.config) for pid in self.ids]
        self.uploads = [UploadScheduler() for _ in self.ids]
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.flows: list[_Flow] = []
        self.uploading: dict[tuple[int, int, PieceRef], _Flow] = {}  # (server, client, piece)
        self.now = 0.0
        self.done_at: dict[int, float] = {}
        self.started: dict[int, float] = {}
        self.store_reads: dict[int, int] = {}  # piece index -> reads
        self.store_bytes = 0
        self.timers: list[float | None] = [None] * self.agents

    # Setting up ---------------------------------------------------------------------------
    def at(self, when: float, call: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (when, next(self.seq), call))

    def start(self, starts: Sequence[float] | None = None) -> None:
        starts = list(starts) if starts is not None else [0.0] * self.agents
        for a in range(self.agents):
            for b in range(self.agents):
                if a != b:
                    self._tell(a, PeerJoined(self.ids[b]))
        for a, when in enumerate(starts):
            self.at(when, lambda a=a: self._begin(a))

    def _begin(self, agent: int) -> None:
        from aetherfs.planner import VersionWanted

        self.started[agent] = self.now
        empty = PeerBitfield(self.ids[agent], self.table.id, Bitfield(len(self.table)))
        self._broadcast(agent, empty)
        self._tell(agent, VersionWanted(self.table))

    # Running ------------------------------------------------------------------------------
    def run(self, until: float = 3_600.0) -> None:
        while True:
            candidates = []
            if self.queue:
                candidates.append(self.queue[0][0])
            finishing = self._next_finish()
            if finishing is not None:
                candidates.append(finishing[0])
            timers = [t for t in self.timers if t is not None]
            if timers:
                candidates.append(min(timers))
            if not candidates:
                return
            when = max(min(candidates), self.now)
            if when > until:
                return
            self._advance(when)
            if finishing is not None and finishing[0] <= when:
                self._finish(finishing[1])
                continue
            if self.queue and self.queue[0][0] <= when:
                _, _, call = heapq.heappop(self.queue)
                call()
                continue
            for agent, timer in enumerate(self.timers):
                if timer is not None and timer <= when:
                    self.timers[agent] = None
                    self._act(agent, self.planners[agent].handle_timer(self.now))

    def _advance(self, when: float) -> None:
        dt = when - self.now
        if dt > 0:
            for flow in self.flows:
                flow.remaining -= flow.rate * dt
        self.now = when

    def _next_finish(self) -> tuple[float, _Flow] | None:
        best: tuple[float, _Flow] | None = None
        for flow in self.flows:
            if flow.rate > 0:
                t = self.now + max(flow.remaining, 0.0) / flow.rate
                if best is None or t < best[0]:
                    best = (t, flow)
        return best

    def _capacity(self, link: Link) -> float:
        kind, host = link
        if host == -1:
            return self.store_rate
        if kind == "up":
            return self.uplink.get(host, self.link_rate)
        return self.link_rate

    def _rates(self) -> None:
        """Max-min fair shares (progressive filling)."""
        left = {link: self._capacity(link) for f in self.flows for link in f.links}
        users: dict[Link, list[_Flow]] = {}
        for f in self.flows:
            for link in f.links:
                users.setdefault(link, []).append(f)
        unfixed = set(self.flows)
        while unfixed:
            share, tight = min(
                (left[link] / sum(1 for f in fs if f in unfixed), link)
                for link, fs in users.items()
                if any(f in unfixed for f in fs)
            )
            for f in [f for f in users[tight] if f in unfixed]:
                f.rate = share
                unfixed.discard(f)
                for link in f.links:
                    left[link] -= share

    def _add_flow(self, flow: _Flow) -> None:
        self.flows.append(flow)
        self._rates()

    def _drop_flow(self, flow: _Flow) -> None:
        if flow in self.flows:
            self.flows.remove(flow)
            self._rates()

    # Planner calls and their actions -------------------------------------------------------
    def _tell(self, agent: int, event: Event, delay: float = 0.0) -> None:
        def call() -> None:
            self._act(agent, self.planners[agent].handle(event, self.now))

        if delay:
            self.at(self.now + delay, call)
        else:
            call()

    def _broadcast(self, agent: int, event: Event) -> None:
        for other in range(self.agents):
            if other != agent:
                self.at(self.now + self.latency, lambda o=other: self._tell(o, event))

    def _act(self, agent: int, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Assign):
                self._assign(agent, action)
            elif isinstance(action, Cancel) and action.source != STORE:
                server = self.index[action.source]  # type: ignore[index]
                self.at(
                    self.now + self.latency,
                    lambda s=server, p=action.piece: self._cancel(s, agent, p),
                )
        planner = self.planners[agent]
        self.timers[agent] = planner.get_timer()
        if agent not in self.done_at and planner.complete(self.table.id):
            self.done_at[agent] = self.now

    def _assign(self, agent: int, action: Assign) -> None:
        piece = action.piece
        if action.source == STORE:
            length = self.table.read(piece.index).length
            self.store_reads[piece.index] = self.store_reads.get(piece.index, 0) + 1
            self.store_bytes += length
            if agent in self.stuck:
                return
            flow = _Flow(-1, agent, piece, float(length))
            self.at(self.now + self.store_latency, lambda: self._add_flow(flow))
            return
        server = self.index[action.source]  # type: ignore[index]
        self.at(self.now + self.latency, lambda: self._request(server, agent, piece, action.size))

    def _request(self, server: int, client: int, piece: PieceRef, size: int) -> None:
        if server in self.silent:
            return
        if not self.uploads[server].request(self.ids[client], piece, size):
            failed = PieceFailed(piece, self.ids[server])
            self._tell(client, failed, delay=self.latency)
            return
        self._serve(server)

    def _serve(self, server: int) -> None:
        for upload in self.uploads[server].serve(self.now):
            client = self.index[upload.peer]
            flow = _Flow(server, client, upload.piece, float(upload.size))
            self.uploading[(server, client, upload.piece)] = flow
            self._add_flow(flow)

    def _cancel(self, server: int, client: int, piece: PieceRef) -> None:
        self.uploads[server].cancel(self.ids[client], piece)
        flow = self.uploading.pop((server, client, piece), None)
        if flow is not None:
            self._drop_flow(flow)
            self.uploads[server].finished(self.ids[client], piece)
            self._serve(server)

    def _finish(self, flow: _Flow) -> None:
        self._drop_flow(flow)
        agent, piece = flow.dst, flow.piece
        if flow.src == -1:
            source = STORE
        else:
            source = self.ids[flow.src]
            self.uploading.pop((flow.src, agent, piece), None)
            self.uploads[flow.src].finished(self.ids[agent], piece)
            self._serve(flow.src)
        planner = self.planners[agent]
        status = {v.version: v for v in planner.status().versions}
        before = status[piece.version].pieces_needed
        self._act(agent, planner.handle(PieceArrived(piece, source), self.now))
        after = {v.version: v for v in planner.status().versions}[piece.version].pieces_needed
        if after < before:  # new to it: announced at once
            self._broadcast(agent, PeerHave(self.ids[agent], piece.version, (piece.index,)))

    # Results ------------------------------------------------------------------------------
    def reads_per_piece(self) -> float:
        return sum(self.store_reads.values()) / len(self.table)

    def last(self) -> float:
        return max(self.done_at.values())


def spread(agents: int, seconds: float, seed: int = 1) -> list[float]:
    """Start times as a 10 s poll with jitter gives them: uniform over `seconds`."""
    import random

    rng = random.Random(seed)
    return sorted(rng.uniform(0, seconds) for _ in range(agents))
