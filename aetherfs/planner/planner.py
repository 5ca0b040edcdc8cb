"""The fetch planner: which source serves which piece of a version, by when. Sans-I/O.

Fed events and `now`, it answers actions (assign a piece to a peer or the store, cancel,
drop a peer, give up) and says when it next wants to be woken (`get_timer`, then
`handle_timer(now)`). It never reads a clock, sleeps or does I/O, so the agent's trio loop and
the fleet simulator drive the same code (DESIGN.md decision 11).

The policy, per scheduling pass, versions in order of priority:
1. Peers first, rarest first: each peer with a free request slot (least loaded first) is asked
   for the rarest piece it has that is needed, idle, and not yet failed from it.
2. The store, for the pieces no peer has that this agent owns by rendezvous hashing over the
   version's members (itself and the live peers that announced the version), and for pieces
   whose peers failed them (`fallback`). Lowest index first, so store reads follow pack order.
3. Every other needed piece waits for its owner to announce it. An owner that announces
   nothing new of the version for its patience (`owner_patience`, or twice a store read's
   time here when the store is slower) is taken out of the version's members, so its pieces
   move to the others (the same on every agent that sees the same silence). An agent that
   starts after others leaves them, for that long, the pieces they are probably reading.
With no peers this agent owns every piece and all go to the store at once, `store_reads` at
a time: never slower than the store alone.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import blake3

from aetherfs.core.ids import ManifestId
from aetherfs.errors import InvalidInput
from aetherfs.planner.bandwidth import BandwidthPolicy, TokenBucket
from aetherfs.planner.bitfield import iter_bits
from aetherfs.planner.events import (
    Action,
    Assign,
    Cancel,
    DropPeer,
    Event,
    GaveUp,
    PeerBitfield,
    PeerGone,
    PeerHave,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    StoreFailed,
    VersionDropped,
    VersionWanted,
)
from aetherfs.planner.ids import STORE, PeerId, PieceRef, Source, StoreSource
from aetherfs.planner.pieces import PieceTable
from aetherfs.planner.policy import PieceSelector, RarestFirst
from aetherfs.planner.rendezvous import Rendezvous, in_read_order, store_start


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Limits and patience; seconds and bytes. The agent passes its `fetch_workers` as
    `store_reads`, so with no peers the store is read exactly as before."""

    store_reads: int = 8  # store reads in flight
    peer_requests: int = 4  # requests in flight to one peer ...
    # ... and to all peers together: they share this agent's downlink, so ten peers asked
    # four pieces each would each send at a fortieth of it and all miss their deadlines.
    download_requests: int = 8
    peer_upload_slots: int = 8  # uploads a peer runs at once (its UploadConfig.slots)
    # A peer request's deadline: this, plus its size at peer_min_rate (a quarter of a
    # 100 Mbit/s link), plus the bytes already asked of that peer at the rate it has shown.
    peer_timeout: float = 1.0
    peer_min_rate: float = 1_000_000.0
    peer_attempts: int = 2  # peers that may fail one piece before the store takes it
    peer_cooldown: float = 2.0  # a peer that missed a deadline rests this long, doubled ...
    peer_cooldown_max: float = 60.0  # ... for each miss in a row, up to this
    owner_patience: float = 10.0  # an owner silent this long loses the pieces it owns ...
    store_pace_patience: float = 2.0  # ... or this many times a store read's time here,
    owner_patience_max: float = 60.0  # up to this
    announce_grace: float = 2.0  # live peers count as members this long before announcing
    store_retry: float = 1.0  # wait after a store error, doubled each time ...
    store_retry_max: float = 30.0  # ... up to this
    store_attempts: int = 5  # store errors on one piece before giving it up

    def __post_init__(self) -> None:
        limits = (
            self.store_reads,
            self.peer_requests,
            self.download_requests,
            self.peer_upload_slots,
        )
        if min(*limits, self.peer_attempts, self.store_attempts) < 1:
            raise InvalidInput("planner limits (reads, requests, attempts) must be at least 1")


@dataclass(slots=True)
class _Request:
    source: Source
    deadline: float | None
    size: int
    started: float


@dataclass(slots=True)
class _Version:
    table: PieceTable
    priority: int
    added: float
    needed: int  # pieces still to fetch
    rendezvous: Rendezvous
    rarity: array[int]  # live, trusted peers holding each piece
    # by_rarity[k]: the pieces exactly k peers hold, so the rarest candidates of a peer are
    # found with a few `&`s rather than a scan of every piece it has.
    by_rarity: list[int]
    tie: array[int]  # this agent's own order among equally rare pieces
    store_start: int  # the piece this agent's store reads start from (hashed from its id)
    deferred: int = 0  # own pieces left to an earlier member that probably reads them now,
    deferred_since: float = 0.0  # since then, for an owner's patience
    in_flight: int = 0
    fallback: int = 0  # pieces for the store whoever owns them (their peers failed)
    store_only: int = 0  # pieces never asked of peers
    given_up: int = 0
    announced: set[PeerId] = field(default_factory=set)  # peers that announced this version
    provisional: set[PeerId] = field(default_factory=set)  # members during announce_grace
    stalled: set[PeerId] = field(default_factory=set)  # silent owners, out of the members
    waiting_since: dict[PeerId, float] = field(default_factory=dict)  # owners waited on
    tried: dict[PeerId, int] = field(default_factory=dict)  # pieces each peer failed
    attempts: dict[int, int] = field(default_factory=dict)
    store_errors: dict[int, int] = field(default_factory=dict)
    retry_at: dict[int, float] = field(default_factory=dict)
    from_store: int = 0  # bytes
    from_peers: int = 0
    store_reads: int = 0  # pieces
    id: ManifestId = field(init=False)

    def __post_init__(self) -> None:
        self.id = self.table.id


@dataclass(slots=True)
class _Peer:
    id: PeerId
    joined: float
    tie: int
    have: dict[ManifestId, int] = field(default_factory=dict)
    progress: dict[ManifestId, float] = field(default_factory=dict)  # last new piece announced
    first_announced: dict[ManifestId, float] = field(default_factory=dict)
    first_piece: dict[ManifestId, float] = field(default_factory=dict)  # its first HAVE
    in_flight: int = 0
    in_flight_bytes: int = 0
    rate: float = 0.0  # bytes per second it has delivered at (moving average), 0: unknown
    last_delivery: float = 0.0
    bytes_received: int = 0
    pieces_received: int = 0
    misses: int = 0
    failures: int = 0
    misses_in_row: int = 0  # since it last delivered
    cool_until: float = 0.0  # missed a deadline: asked nothing and no member until then


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: ManifestId
    pieces: int
    pieces_needed: int
    pieces_in_flight: int
    bytes_needed: int
    bytes_from_store: int
    bytes_from_peers: int
    store_reads: int
    pieces_given_up: int


@dataclass(frozen=True, slots=True)
class PeerStatus:
    peer: PeerId
    in_flight: int
    bytes_received: int
    pieces_received: int
    misses: int  # requests past their deadline
    failures: int  # requests refused or broken off


@dataclass(frozen=True, slots=True)
class PlannerStatus:
    versions: tuple[VersionStatus, ...]
    peers: tuple[PeerStatus, ...]
    banned: tuple[PeerId, ...]
    store_in_flight: int


class FetchPlanner:
    """One per agent: every subscription's versions, every peer, one set of caps."""

    def __init__(
        self,
        self_id: PeerId,
        config: PlannerConfig | None = None,
        bandwidth: BandwidthPolicy | None = None,
        now: float = 0.0,
        selector: PieceSelector | None = None,
    ) -> None:
        self.self_id = self_id
        self.config = config or PlannerConfig()
        self.selector: PieceSelector = selector or RarestFirst()
        policy = bandwidth or BandwidthPolicy()
        self._download: TokenBucket = policy.bucket(policy.peer_download, now)
        self._store_bucket: TokenBucket = policy.bucket(policy.store_read, now)
        self._versions: dict[ManifestId, _Version] = {}
        self._peers: dict[PeerId, _Peer] = {}
        self._banned: dict[PeerId, str] = {}
        self._requests: dict[PieceRef, _Request] = {}
        self._store_in_flight = 0
        self._peer_in_flight = 0
        # How long a store read takes here (moving average of whole reads, seconds): an owner
        # is only late once it had that long, so a store shared by many agents (each read slow)
        # does not make every owner look stalled at once.
        self._store_read_time = 0.0
        self._store_read_rate = 0.0  # bytes per second of one read (moving average)
        self._timer: float | None = None
        # What peers can be asked for, per version: an OR over every peer, kept until a
        # peer's bitfield, presence or rest changes.
        self._available_cache: dict[ManifestId, int] = {}

    # Entry points ---------------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        actions: list[Action] = []
        match event:
            case VersionWanted():
                self._want(event, now)
            case VersionDropped():
                self._drop_version(event.version, actions)
            case PeerJoined():
                self._join(event, now, actions)
            case PeerBitfield():
                self._announce(event.peer, event.version, event.bitfield.bits, now, actions)
            case PeerHave():
                bits = 0
                for index in event.indices:
                    bits |= 1 << index
                self._announce(event.peer, event.version, bits, now, actions, whole=False)
            case PieceArrived():
                self._arrived(event.piece, event.source, now, actions)
            case PieceFailed():
                self._peer_failed(event, actions)
            case StoreFailed():
                self._store_failed(event.piece, now, actions)
            case PeerGone():
                self._forget_peer(event.peer)
        self._schedule(now, actions)
        return actions

    def handle_events(self, events: Iterable[Event], now: float) -> list[Action]:
        actions: list[Action] = []
        for event in events:
            actions.extend(self.handle(event, now))
        return actions

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called; None: only an event can change things."""
        return self._timer

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for piece, request in list(self._requests.items()):
            source, deadline = request.source, request.deadline
            if self._requests.get(piece) is not request:
                continue  # ended by an earlier miss of its peer in this same pass
            if isinstance(source, PeerId) and deadline is not None and deadline <= now:
                self._missed(piece, source, now, actions)
        for peer in self._peers.values():
            if peer.cool_until and peer.cool_until <= now:
                peer.cool_until = 0.0
                self._available_cache.clear()
                self._rejoin(peer)
        for version in self._versions.values():
            self._expire_members(version, now)
        self._schedule(now, actions)
        return actions

    # Questions ------------------------------------------------------------------------------
    def complete(self, version: ManifestId) -> bool:
        state = self._versions.get(version)
        return state is not None and state.needed == 0

    def status(self) -> PlannerStatus:
        versions = tuple(
            VersionStatus(
                version=v.id,
                pieces=len(v.table),
                pieces_needed=v.needed.bit_count(),
                pieces_in_flight=v.in_flight.bit_count(),
                bytes_needed=sum(v.table.size(i) for i in iter_bits(v.needed)),
                bytes_from_store=v.from_store,
                bytes_from_peers=v.from_peers,
                store_reads=v.store_reads,
                pieces_given_up=v.given_up.bit_count(),
            )
            for v in self._versions.values()
        )
        peers = tuple(
            PeerStatus(p.id, p.in_flight, p.bytes_received, p.pieces_received, p.misses, p.failures)
            for p in sorted(self._peers.values(), key=lambda p: p.id)
        )
        return PlannerStatus(versions, peers, tuple(sorted(self._banned)), self._store_in_flight)

    def owner(self, piece: PieceRef) -> PeerId | None:
        """Who reads `piece` from the store, as this agent sees the LAN now."""
        return self._versions[piece.version].rendezvous.owner(piece.index)

    # Events ---------------------------------------------------------------------------------
    def _want(self, event: VersionWanted, now: float) -> None:
        table = event.table
        known = self._versions.get(table.id)
        if known is not None:
            known.priority = event.priority
            return
        count = len(table)
        held = event.held.bits if event.held is not None else 0
        for given in (event.held, event.store_only):
            if given is not None and given.count != count:
                raise InvalidInput(f"a bitfield for {table.id.short()} does not match its table")
        store_only = event.store_only.bits if event.store_only is not None else 0
        tie = array("I")
        tie.frombytes(
            blake3.blake3(b"aetherfs order\0" + self.self_id.raw + table.id.digest).digest(
                length=4 * count
            )
        )
        version = _Version(
            table=table,
            priority=event.priority,
            added=now,
            needed=((1 << count) - 1) & ~held,
            rendezvous=Rendezvous(table.id, count),
            rarity=array("H", bytes(2 * count)),
            by_rarity=[(1 << count) - 1],
            tie=tie,
            store_start=store_start(self.self_id, table.id, count),
            fallback=store_only,
            store_only=store_only,
        )
        self._versions[table.id] = version
        self._available_cache.pop(table.id, None)
        version.rendezvous.add(self.self_id)
        for peer in sorted(self._peers.values(), key=lambda p: p.id):
            bits = peer.have.get(table.id)
            if bits is not None and bits >> count:
                bits = peer.have[table.id] = bits & ((1 << count) - 1)  # past the end: ignored
            if bits is None:
                # Live but silent about this version: a member until announce_grace is up,
                # so agents that start together agree on the owners from the first read.
                version.provisional.add(peer.id)
                self._member(version, peer)
                continue
            version.announced.add(peer.id)
            self._member(version, peer)
            peer.progress.setdefault(table.id, now)
            self._count(version, bits, 1)
        self._defer_to_earlier(version, now)

    def _defer_to_earlier(self, version: _Version, now: float) -> None:
        """Members that announced the version before this agent did have been reading the
        store, and the reads they started before they heard of this agent are of pieces this
        agent may own now. A member reads the pieces it owns among the members it knows in
        pack order from its own hashed start (`store_start`, which anyone can compute), so
        the next `store_reads` of them nobody has announced are probably in flight there:
        this agent leaves those of them it owns to that member for an owner's patience,
        rather than read them too. Done when the version is wanted and again when members
        in their announce grace leave (the pieces they held move to this agent)."""
        announced = sorted(
            (
                self._peers[peer_id].first_announced.get(version.id, now),
                peer_id,
            )
            for peer_id in version.announced
            if peer_id in version.rendezvous and peer_id not in version.provisional
        )
        # Those that announced within the grace before this agent still counted it a member
        # (provisional) when they heard of it: they read none of its pieces.
        since = version.added - self.config.announce_grace
        earlier = {peer_id for first, peer_id in announced if first < since}
        mine = version.rendezvous.owned(self.self_id)
        unannounced = self._idle(version) & ~self._available(version)
        if not earlier or not mine & unannounced:
            return
        # A member's view grew as others announced, and reads it started in an older view
        # (a larger share) may still run: the fronts of each of its views, as they were.
        count = len(version.table)
        views = Rendezvous(version.id, count)
        deferred = 0
        for _, peer_id in announced:
            views.add(peer_id)
            for member in sorted(earlier & views.members):
                order = in_read_order(
                    views.owned(member) & unannounced, store_start(member, version.id, count)
                )
                for index in itertools.islice(order, self.config.store_reads):
                    deferred |= 1 << index
        deferred &= mine
        if deferred & ~version.deferred:
            version.deferred |= deferred
            version.deferred_since = now

    def _join(self, event: PeerJoined, now: float, actions: list[Action]) -> None:
        if event.peer == self.self_id:
            return
        if event.peer in self._banned:
            actions.append(DropPeer(event.peer, self._banned[event.peer]))  # again
            return
        if event.peer in self._peers:
            self._forget_peer(event.peer)
        tie = int.from_bytes(
            blake3.blake3(b"aetherfs peer order\0" + self.self_id.raw + event.peer.raw).digest()[:4]
        )
        self._peers[event.peer] = _Peer(event.peer, now, tie)
        self._available_cache.clear()
        for version_id, bitfield in event.bitfields.items():
            self._announce(event.peer, version_id, bitfield.bits, now, actions)
        for version in self._versions.values():
            if event.peer not in version.rendezvous and now < version.added + (
                self.config.announce_grace
            ):
                version.provisional.add(event.peer)
                version.rendezvous.add(event.peer)

    def _announce(
        self,
        peer_id: PeerId,
        version_id: ManifestId,
        bits: int,
        now: float,
        actions: list[Action],
        whole: bool = True,
    ) -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            return  # not connected (or banned): nothing can be asked of it
        version = self._versions.get(version_id)
        old = peer.have.get(version_id, 0)
        new = bits if whole else old | bits
        if version is not None and new >> len(version.table):
            self._ban(peer_id, f"announced pieces past the end of {version_id.short()}", actions)
            return
        peer.have[version_id] = new
        self._available_cache.clear()
        if version_id not in peer.progress or new & ~old:
            peer.progress[version_id] = now
        peer.first_announced.setdefault(version_id, now)
        if new:
            peer.first_piece.setdefault(version_id, now)
        if version is None:
            return
        self._count(version, old & ~new, -1)
        self._count(version, new & ~old, 1)
        version.announced.add(peer_id)
        version.provisional.discard(peer_id)
        if new & ~old:
            version.waiting_since.pop(peer_id, None)
            version.stalled.discard(peer_id)  # progress again: a member again
        self._member(version, peer)

    def _arrived(self, piece: PieceRef, source: Source, now: float, actions: list[Action]) -> None:
        version = self._versions.get(piece.version)
        if version is None:
            return
        bit = 1 << piece.index
        request = self._requests.get(piece)
        if request is not None:
            self._finish(piece, request)
            if request.source != source:
                actions.append(Cancel(piece, request.source))
            elif isinstance(source, PeerId):
                self._measure(source, request, now)
            else:
                took = max(now - request.started, 1e-6)
                rate = request.size / took
                first = not self._store_read_time
                self._store_read_time = took if first else 0.7 * self._store_read_time + 0.3 * took
                self._store_read_rate = rate if first else 0.7 * self._store_read_rate + 0.3 * rate
        if not version.needed & bit:
            return  # a late duplicate: counted nowhere, it was not needed
        size = version.table.size(piece.index)
        version.needed &= ~bit
        version.fallback &= ~bit
        for mapping in (version.attempts, version.store_errors, version.retry_at):
            mapping.pop(piece.index, None)
        if isinstance(source, StoreSource):
            version.from_store += version.table.read(piece.index).length
            version.store_reads += 1
        else:
            version.from_peers += size
            peer = self._peers.get(source)
            if peer is not None:
                peer.bytes_received += size
                peer.pieces_received += 1
                peer.misses_in_row = 0

    def _measure(self, peer_id: PeerId, request: _Request, now: float) -> None:
        """Its rate: bytes over the time since it started on this request (requests to one
        peer are served one after another, so from the later of the ask and its last piece)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        took = now - max(request.started, peer.last_delivery)
        peer.last_delivery = now
        if took > 0:
            sample = request.size / took
            peer.rate = sample if not peer.rate else 0.7 * peer.rate + 0.3 * sample

    def _peer_failed(self, event: PieceFailed, actions: list[Action]) -> None:
        request = self._requests.get(event.piece)
        current = request is not None and request.source == event.peer
        if request is not None and current:
            self._finish(event.piece, request)
        peer = self._peers.get(event.peer)
        if peer is not None:
            peer.failures += 1
        if event.bad_block:
            self._ban(event.peer, "sent a block that does not match its id", actions)
        if current or event.bad_block:
            self._lose(event.piece, event.peer)  # else: a request already moved on

    def _missed(self, piece: PieceRef, peer_id: PeerId, now: float, actions: list[Action]) -> None:
        """A deadline passed: the peer loses that piece and every request queued behind it."""
        for other, request in list(self._requests.items()):
            if request.source == peer_id and other != piece:
                # Not failed by it, only queued behind: idle again, asked of whoever has it
                # (the resting peer is out of the members, so its own pieces get new owners).
                self._finish(other, request)
                actions.append(Cancel(other, peer_id))
        self._finish(piece, self._requests[piece])
        actions.append(Cancel(piece, peer_id))
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.misses += 1
            peer.misses_in_row += 1
            rest = self.config.peer_cooldown * 2 ** (peer.misses_in_row - 1)
            peer.cool_until = now + min(rest, self.config.peer_cooldown_max)
            self._available_cache.clear()
            if self._unserving(peer):
                # Out of every version's members while it rests: the pieces it owns move to
                # agents that deliver, instead of every agent reading them from the store.
                for version in self._versions.values():
                    version.rendezvous.remove(peer_id)
        self._lose(piece, peer_id, missed=True)

    def _lose(self, piece: PieceRef, peer_id: PeerId, missed: bool = False) -> None:
        """`peer_id` failed `piece`: it is not asked again; after `peer_attempts` failures, or
        when no other peer has it, the store takes it. A first miss in a row is no failure:
        the peer rests and may be asked again (the piece is on the LAN: reading it from the
        store because its holder was slow once is what made a busy LAN read it twice)."""
        version = self._versions.get(piece.version)
        if version is None:
            return
        bit = 1 << piece.index
        attempts = version.attempts.get(piece.index, 0) + 1
        version.attempts[piece.index] = attempts
        peer = self._peers.get(peer_id)
        resting = missed and peer is not None and not self._unserving(peer)
        if resting and attempts < self.config.peer_attempts:
            return
        version.tried[peer_id] = version.tried.get(peer_id, 0) | bit
        others = any(
            p.have.get(version.id, 0) & bit and not version.tried.get(p.id, 0) & bit
            for p in self._peers.values()
            if not self._unserving(p)
        )
        if attempts >= self.config.peer_attempts or not others:
            version.fallback |= bit

    def _store_failed(self, piece: PieceRef, now: float, actions: list[Action]) -> None:
        request = self._requests.get(piece)
        if request is not None and isinstance(request.source, StoreSource):
            self._finish(piece, request)
        version = self._versions.get(piece.version)
        if version is None:
            return
        errors = version.store_errors.get(piece.index, 0) + 1
        version.store_errors[piece.index] = errors
        if errors >= self.config.store_attempts:
            version.given_up |= 1 << piece.index
            actions.append(GaveUp(piece, f"the store failed it {errors} times"))
            return
        wait = min(self.config.store_retry * 2 ** (errors - 1), self.config.store_retry_max)
        version.retry_at[piece.index] = now + wait
        version.fallback |= 1 << piece.index  # another agent's read may have failed too

    def _ban(self, peer_id: PeerId, reason: str, actions: list[Action]) -> None:
        if peer_id in self._banned:
            return
        self._banned[peer_id] = reason
        actions.append(DropPeer(peer_id, reason))
        self._forget_peer(peer_id)

    def _forget_peer(self, peer_id: PeerId) -> None:
        peer = self._peers.pop(peer_id, None)
        self._available_cache.clear()
        if peer is None:
            return
        for piece, request in list(self._requests.items()):
            if request.source == peer_id:
                self._finish(piece, request)  # no Cancel: the connection is gone
        for version in self._versions.values():
            self._count(version, peer.have.get(version.id, 0), -1)
            version.rendezvous.remove(peer_id)
            version.announced.discard(peer_id)
            version.provisional.discard(peer_id)
            version.stalled.discard(peer_id)
            version.tried.pop(peer_id, None)
            version.deferred = 0  # perhaps left to it: read them now

    def _drop_version(self, version_id: ManifestId, actions: list[Action]) -> None:
        if self._versions.pop(version_id, None) is None:
            return
        self._available_cache.pop(version_id, None)
        for piece, request in list(self._requests.items()):
            if piece.version == version_id:
                self._finish(piece, request)
                actions.append(Cancel(piece, request.source))

    def _rejoin(self, peer: _Peer) -> None:
        """A rested peer is a member again of the versions it announced."""
        for version in self._versions.values():
            if peer.id in version.announced and peer.id not in version.stalled:
                version.rendezvous.add(peer.id)

    def _unserving(self, peer: _Peer) -> bool:
        """Resting after `peer_attempts` misses in a row, or after a miss before it ever
        delivered: no member, its pieces not counted on. A peer that has delivered and missed
        once only rests (asked nothing, still a member and a holder): one serving many at
        once is slow, not silent, and moving its pieces would have them read again."""
        if not peer.cool_until:
            return False
        return not peer.pieces_received or peer.misses_in_row >= self.config.peer_attempts

    def _member(self, version: _Version, peer: _Peer) -> None:
        if peer.id not in version.stalled and not self._unserving(peer):
            version.rendezvous.add(peer.id)

    def _expire_members(self, version: _Version, now: float) -> None:
        """Provisional members past the grace, and owners silent past their patience, leave;
        pieces left to an earlier member are this agent's to read again past theirs."""
        if version.deferred and now >= self._deferred_until(version, now):
            version.deferred = 0
        if version.provisional and now >= version.added + self.config.announce_grace:
            for peer_id in sorted(version.provisional):
                version.rendezvous.remove(peer_id)
            version.provisional.clear()
            self._defer_to_earlier(version, now)
        for peer_id, deadline in self._stall_deadlines(version, now):
            if deadline <= now:
                version.stalled.add(peer_id)
                version.rendezvous.remove(peer_id)

    def _stall_deadlines(self, version: _Version, now: float) -> list[tuple[PeerId, float]]:
        """For each announced owner this agent waits on, when it is taken to have stalled:
        `owner_patience` after the later of its last new piece and the start of the wait (an
        owner that has just been handed pieces gets the whole patience for them)."""
        waiting = self._waiting(version)
        patience = self._owner_patience(version, now) if waiting else 0.0
        found: list[tuple[PeerId, float]] = []
        waited: dict[PeerId, float] = {}
        for owner, bits in version.rendezvous.owned_items() if waiting else ():
            if owner == self.self_id or owner in version.provisional or not bits & waiting:
                continue
            peer = self._peers.get(owner)
            if peer is None:
                continue
            waited[owner] = version.waiting_since.get(owner, now)
            since = max(peer.progress.get(version.id, peer.joined), waited[owner])
            found.append((owner, since + patience))
        version.waiting_since = waited
        return found

    def _deferred_until(self, version: _Version, now: float) -> float:
        """An owner's patience from the deferral (longer as this agent's reads are slower)."""
        return version.deferred_since + self._owner_patience(version, now)

    def _owner_patience(self, version: _Version, now: float) -> float:
        """`owner_patience`, or longer when this agent's own store reads take longer: twice
        the time a read takes here (measured, or the age of the oldest read still running).
        Owners read the same store at the same pace, so one that is merely slow is not
        mistaken for a stalled one and its pieces read a second time."""
        pace = self._store_read_time
        for request in self._requests.values():
            if isinstance(request.source, StoreSource):
                pace = max(pace, now - request.started)
        # An agent with no store reads of its own (it owns little, or left its pieces to
        # earlier members) takes the pace from its peers: how long they took from announcing
        # the version to their first piece of it.
        for peer in self._peers.values():
            first, piece = peer.first_announced.get(version.id), peer.first_piece.get(version.id)
            if first is not None and piece is not None:
                pace = max(pace, piece - first)
        config = self.config
        return min(
            max(config.owner_patience, config.store_pace_patience * pace), config.owner_patience_max
        )

    # Scheduling -----------------------------------------------------------------------------
    def _available(self, version: _Version) -> int:
        """Pieces some peer holds that can be counted on (not unserving)."""
        bits = self._available_cache.get(version.id)
        if bits is None:
            bits = 0
            for peer in self._peers.values():
                if not self._unserving(peer):
                    bits |= peer.have.get(version.id, 0)
            self._available_cache[version.id] = bits
        return bits

    def _idle(self, version: _Version) -> int:
        return version.needed & ~version.in_flight & ~version.given_up

    def _store_wanted(self, version: _Version, available: int) -> int:
        own = version.rendezvous.owned(self.self_id) & ~available & ~version.deferred
        # Held, but only by peers that failed it here: the store, whoever owns it.
        failed = available
        if version.tried:
            for peer in self._peers.values():
                if not self._unserving(peer):
                    failed &= ~(peer.have.get(version.id, 0) & ~version.tried.get(peer.id, 0))
        else:
            failed = 0
        return self._idle(version) & (own | version.fallback | failed)

    def _waiting(self, version: _Version) -> int:
        available = self._available(version)
        return self._idle(version) & ~available & ~self._store_wanted(version, available)

    def _schedule(self, now: float, actions: list[Action]) -> None:
        timers: list[float] = []
        versions = sorted(self._versions.values(), key=lambda v: (-v.priority, v.id))
        for version in versions:
            if version.deferred and now >= self._deferred_until(version, now):
                version.deferred = 0
        for version in versions:
            self._assign_peers(version, now, actions, timers)
        for version in versions:
            self._assign_store(version, now, actions, timers)
        for request in self._requests.values():
            if request.deadline is not None:
                timers.append(request.deadline)
        for version in versions:
            if version.provisional:
                timers.append(version.added + self.config.announce_grace)
            if version.deferred:
                timers.append(self._deferred_until(version, now))
        timers.extend(p.cool_until for p in self._peers.values() if p.cool_until)
        for version in versions:
            timers.extend(deadline for _, deadline in self._stall_deadlines(version, now))
        # A deadline may have passed already (an owner's patience shrinks when this agent's
        # own slow read ends): due now.
        self._timer = max(min(timers), now) if timers else None

    def _assign_peers(
        self, version: _Version, now: float, actions: list[Action], timers: list[float]
    ) -> None:
        limit = self.config.peer_requests
        while True:
            idle = self._idle(version) & ~version.store_only
            if not idle or self._peer_in_flight >= self.config.download_requests:
                return
            peers = sorted(
                (p for p in self._peers.values() if p.in_flight < limit and not p.cool_until),
                key=lambda p: (p.in_flight, p.tie, p.id),
            )
            assigned = False
            for peer in peers:
                wanted = peer.have.get(version.id, 0) & idle & ~version.tried.get(peer.id, 0)
                if not wanted:
                    continue
                if self._peer_in_flight >= self.config.download_requests:
                    return
                if not self._download.ready(now):
                    timers.append(self._download.ready_at(now))
                    return
                index = self.selector.select(wanted, version.by_rarity, version.tie)
                size = version.table.size(index)
                self._download.take(now, size)
                deadline = now + self._patience_for(peer, size, self._crowd(version, index))
                self._start(version, index, _Request(peer.id, deadline, size, now), actions)
                peer.in_flight += 1
                peer.in_flight_bytes += size
                self._peer_in_flight += 1
                idle &= ~(1 << index)
                assigned = True
            if not assigned:
                return

    def _assign_store(
        self, version: _Version, now: float, actions: list[Action], timers: list[float]
    ) -> None:
        wanted = self._store_wanted(version, self._available(version))
        # From this agent's own starting piece on, in pack order, then round to the start:
        # an agent that learns of another late has read a run from its own start, and the
        # newcomer, starting elsewhere, reaches those pieces last (by then announced).
        for index in in_read_order(wanted, version.store_start):
            if self._store_in_flight >= self.config.store_reads:
                return
            retry = version.retry_at.get(index)
            if retry is not None and retry > now:
                timers.append(retry)
                continue
            if not self._store_bucket.ready(now):
                timers.append(self._store_bucket.ready_at(now))
                return
            length = version.table.read(index).length
            self._store_bucket.take(now, length)
            self._start(version, index, _Request(STORE, None, length, now), actions)
            self._store_in_flight += 1

    def _start(
        self, version: _Version, index: int, request: _Request, actions: list[Action]
    ) -> None:
        piece = PieceRef(version.id, index)
        self._requests[piece] = request
        version.in_flight |= 1 << index
        actions.append(Assign(piece, request.source, request.size, request.deadline))

    def _finish(self, piece: PieceRef, request: _Request) -> None:
        del self._requests[piece]
        if isinstance(request.source, StoreSource):
            self._store_in_flight -= 1
        else:
            self._peer_in_flight -= 1
            peer = self._peers.get(request.source)
            if peer is not None:
                peer.in_flight -= 1
                peer.in_flight_bytes -= request.size
        version = self._versions.get(piece.version)
        if version is not None:
            version.in_flight &= ~(1 << piece.index)

    def _patience_for(self, peer: _Peer, size: int, crowd: float = 1.0) -> float:
        config = self.config
        floor = config.peer_min_rate
        if self._store_read_rate:
            # A peer is late only when slower than the store is here: a store shared by many
            # agents is slow per read, and so is a peer serving many at once.
            floor = min(floor, self._store_read_rate)
        ahead = peer.in_flight_bytes / max(peer.rate, floor)
        return config.peer_timeout + crowd * size / floor + ahead

    def _crowd(self, version: _Version, index: int) -> float:
        """How many rounds of uploads a holder of the piece needs for all who want it: the
        members that lack it over its holders' upload slots (`peer_upload_slots` each), at
        least 1. Nineteen agents asking the one holder of a new piece wait for three rounds
        of its eight uploads, and are not late for it."""
        bit = 1 << index
        holders = wanting = 0
        for peer in self._peers.values():
            bits = peer.have.get(version.id)
            if bits is None:
                continue
            if bits & bit:
                holders += 1
            else:
                wanting += 1
        return max(1.0, (wanting + 1) / (max(holders, 1) * self.config.peer_upload_slots))

    def _count(self, version: _Version, bits: int, delta: int) -> None:
        rarity, buckets = version.rarity, version.by_rarity
        for index in iter_bits(bits):
            old = rarity[index]
            new = max(0, old + delta)
            if new == old:
                continue
            bit = 1 << index
            buckets[old] &= ~bit
            if new == len(buckets):
                buckets.append(0)
            buckets[new] |= bit
            rarity[index] = new
        while len(buckets) > 1 and not buckets[-1]:
            buckets.pop()
