"""SwarmEngine: one agent's trades with its peers, over real TCP.

The planner decides everything (who serves which piece, by when, who is dropped); the
protocol checks everything on the wire (admission, access, block ids). The engine only
moves bytes between them, the sockets and the three seams:

    VersionWanted -> planner -> Assign(store) -> StoreReader.read_piece (thread) -> sink
                             -> Assign(peer)  -> REQUEST ... BLOCK ... DONE    -> sink
    sink done -> PieceArrived to the planner, HAVE to every peer that proved the dataset
    a peer's REQUEST -> UploadScheduler -> BlockStore.read (thread) -> BLOCK ... DONE
    fetch_manifest -> RECORD_REQUEST to one peer at a time -> RECORD chunks ... DONE
    a peer's RECORD_REQUEST (MANIFEST) -> RecordSource (thread) -> RECORD chunks ... DONE

Nursery tree (`run`):

    run
    ├── listener (trio.serve_listeners) ── one PeerLink.run per accepted connection
    ├── dialler per address (static peers, and those the address channel names)
    │     └── PeerLink.run, then redial after a backoff when the link is gone
    ├── address channel reader (discovery)
    ├── timer: planner.get_timer() and the upload scheduler's, handle_timer when due
    └── store reads, deliveries and uploads, one task each, their blocking calls on threads
        behind one CapacityLimiter

Everything runs on the trio thread; planner calls are serialised through one queue, so an
action that closes a connection (whose ConnectionClosed becomes PeerGone) never re-enters it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import trio

from aetherfs.core.fleet_certs import RevocationList
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import MAX_MANIFEST_BYTES
from aetherfs.errors import AetherError, IntegrityError, InvalidInput, StoreUnavailable
from aetherfs.net.transport import READ_SIZE, PeerAddress, PeerLink, dial, peer_address
from aetherfs.planner import (
    STORE,
    Action,
    Assign,
    Cancel,
    DropPeer,
    FetchPlanner,
    GaveUp,
    PeerBitfield,
    PeerGone,
    PeerHave,
    PeerId,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    PieceRef,
    PieceTable,
    Source,
    StoreFailed,
    UploadRequest,
    UploadScheduler,
    VersionStatus,
    VersionWanted,
)
from aetherfs.planner import Bitfield as Pieces
from aetherfs.planner import Event as PlannerEvent
from aetherfs.planner.rendezvous import weights
from aetherfs.protocol.admission import (
    AccessId,
    Admission,
    DatasetAccess,
    FleetCertificate,
    open_revocations,
)
from aetherfs.protocol.connection import PeerConfig, PeerConnection
from aetherfs.protocol.errors import LocalProtocolError, RemoteProtocolError, StreamTruncated
from aetherfs.protocol.events import (
    AccessProved,
    ConnectionClosed,
    Established,
    Event,
    RevocationsRefused,
    RevocationsUpdated,
)
from aetherfs.protocol.frames import MAX_BLOCK_SIZE
from aetherfs.protocol.messages import (
    Bitfield,
    Block,
    Done,
    Have,
    HaveRange,
    Reason,
    Record,
    RecordKind,
    RecordRequest,
    Reject,
    RejectReason,
    Request,
)
from aetherfs.protocol.messages import Cancel as CancelMessage
from aetherfs.protocol.records import RecordAssembly, record_chunks
from aetherfs.swarm.interfaces import (
    AddressEvent,
    AddressGone,
    BlockSink,
    BlockStore,
    PeerRecord,
    RecordSource,
    StoredBlocks,
    StoreReader,
    Swarm,
)
from aetherfs.swarm.status import EngineStatus, LinkStatus, PeerCounters, VersionCounters

MAX_LINKS = 256  # connections at once, both ways: more are closed at accept
# Bytes of an upload queued on a link beyond what the socket took: enough that the writer
# sends a few blocks per write, little enough that a slow peer does not make us hold a piece.
UPLOAD_AHEAD = 256 * 1024

# Told of every version a peer announces (a BITFIELD, even an empty "I want it", or a HAVE),
# on the trio thread: it must be cheap and never block. The claim is unchecked.
OnAnnounce = Callable[[AccessId, ManifestId], None]
KEEP_REFUSED = 32
# Told of every revocation list a peer passed: taken (RevocationsUpdated: keep it durably) or
# refused (RevocationsRefused: say why). On the trio thread: cheap, never blocking.
RevocationNews = RevocationsUpdated | RevocationsRefused
OnRevocations = Callable[[PeerId | None, RevocationNews], None]


# Records (sealed manifests) asked of peers and served to them.
MANIFEST_ID_SIZE = 32  # bytes of a manifest id, the ref of a MANIFEST record
RECORD_POLL = 0.05  # seconds between looks for a peer to ask a record of, while links come up


class VersionFailed(StoreUnavailable):
    """A version could not be fetched: the planner gave up a piece (the store failed it)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Parsed once at the edge (the agent's config)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0: any free port (`SwarmEngine.port` says which)
    static_peers: tuple[PeerAddress, ...] = ()
    store_threads: int = 8  # store reads at once (the planner's store_reads caps them too)
    disk_threads: int = 4  # BlockStore reads and sink writes at once
    read_size: int = READ_SIZE
    redial_min: float = 0.5  # a dialled peer that went away is dialled again after this,
    redial_max: float = 30.0  # doubled for each failure in a row, up to this
    max_links: int = MAX_LINKS


@dataclass(slots=True)
class _Version:
    table: PieceTable
    dataset: AccessId
    held: int  # pieces this agent holds (sunk and announceable)
    fetching: bool = False
    delivering: int = 0  # pieces being written by the sink
    done: trio.Event = field(default_factory=trio.Event)
    error: AetherError | None = None


@dataclass(slots=True)
class _Fetch:
    """A REQUEST of ours, open on one link."""

    piece: PieceRef
    expected: frozenset[BlockId]
    got: dict[BlockId, bytes] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _RecordFetch:
    """A RECORD_REQUEST of ours, open on one link: its chunks, then DONE or REJECT."""

    assembly: RecordAssembly
    data: bytes | None = None
    answered: trio.Event = field(default_factory=trio.Event)


@dataclass(eq=False, slots=True)
class _LinkState:
    link: PeerLink
    peer: PeerId | None = None
    proved: set[AccessId] = field(default_factory=set)
    outgoing: dict[int, _Fetch] = field(default_factory=dict)  # request id -> fetch
    asked: dict[PieceRef, int] = field(default_factory=dict)  # piece -> request id
    incoming: dict[int, PieceRef] = field(default_factory=dict)  # the peer's requests
    announced: set[ManifestId] = field(default_factory=set)  # versions it sent a bitfield of
    record_fetches: dict[int, _RecordFetch] = field(default_factory=dict)  # ours, by id
    records_served: set[int] = field(default_factory=set)  # the peer's, being answered
    counted_sent: int = 0
    counted_received: int = 0


class SwarmEngine:
    def __init__(
        self,
        config: EngineConfig,
        peer_config: PeerConfig,
        datasets: Sequence[DatasetAccess],
        planner: FetchPlanner,
        uploads: UploadScheduler,
        blocks: BlockStore,
        store: StoreReader,
        sink: BlockSink,
        on_announce: OnAnnounce | None = None,
        wall_clock: Callable[[], float] = time.time,
        records: RecordSource | None = None,
    ) -> None:
        """`wall_clock`: the Unix time, which certificates are dated in (trio's clock is not).
        `records`: the sealed manifests served to peers (None: record requests are answered
        NOT_HAVE)."""
        self.config = config
        self.records = records
        self.on_announce = on_announce
        self.peer_config = peer_config
        self.wall_clock = wall_clock
        self._revocations = _held_list(peer_config.admission)
        self._revocation_listeners: list[OnRevocations] = []
        self.planner = planner
        self.uploads = uploads
        self.blocks = blocks
        self.store = store
        self.sink = sink
        self.self_id = PeerId(bytes(peer_config.identity.verify_key))
        if planner.self_id != self.self_id:
            raise ValueError("the planner's self id must be the identity key's bytes")
        self.port = 0
        self._datasets = {access.access_id: access for access in datasets}
        self._versions: dict[ManifestId, _Version] = {}
        self._links: dict[PeerId, _LinkState] = {}  # the one current link per peer
        self._states: dict[PeerLink, _LinkState] = {}  # every live link
        self._counters: dict[PeerId, PeerCounters] = {}
        self._refused: deque[LinkStatus] = deque(maxlen=KEEP_REFUSED)
        self._own_addresses: set[PeerAddress] = set()
        self._diallers: dict[PeerAddress, trio.CancelScope] = {}
        # Two limiters: slow store reads must not hold up serving peers from disk.
        self._store_limiter = trio.CapacityLimiter(config.store_threads)
        self._disk_limiter = trio.CapacityLimiter(config.disk_threads)
        self._queue: deque[PlannerEvent] = deque()
        self._planning = False
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None

    # --- what the agent calls -----------------------------------------------------------

    async def run(
        self,
        addresses: trio.MemoryReceiveChannel[AddressEvent] | None = None,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen, dial the static peers and those `addresses` names, and trade until
        cancelled. `task_status.started` gets the listening port."""
        listeners = await trio.open_tcp_listeners(
            self.config.listen_port, host=self.config.listen_host
        )
        self.port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(trio.serve_listeners, self._accepted, listeners)
            nursery.start_soon(self._timers)
            for address in self.config.static_peers:
                self.dial(address)
            if addresses is not None:
                nursery.start_soon(self._read_addresses, addresses)
            task_status.started(self.port)

    def dial(self, address: PeerAddress) -> None:
        """Keep a connection to `address` (dialled again after it ends, until AddressGone)."""
        if address in self._diallers or self._nursery is None:
            return
        scope = trio.CancelScope()
        self._diallers[address] = scope
        self._nursery.start_soon(self._dialler, address, scope)

    def forget_address(self, address: PeerAddress) -> None:
        scope = self._diallers.pop(address, None)
        if scope is not None:
            scope.cancel()

    async def fetch(
        self,
        table: PieceTable,
        dataset: AccessId,
        held: Pieces | None = None,
        priority: int = 0,
    ) -> VersionCounters:
        """Fetch the pieces of `table` not `held`; returns when every piece was verified and
        sunk (raises VersionFailed if the planner gave one up). The version is served to
        peers from the start, piece by piece, and after. The dataset must be one of ours
        (given at start or by `add_dataset`): peers serve only what we prove."""
        if dataset not in self._datasets:
            raise InvalidInput(
                f"dataset {dataset.short()} is not one this agent can prove: add it first"
            )
        version = self._version(table, dataset, held)
        if not version.fetching:
            version.fetching = True
            self._plan(
                VersionWanted(
                    table,
                    held=Pieces(len(table), version.held),
                    priority=priority,
                    store_only=table.with_blocks_over(MAX_BLOCK_SIZE),
                )
            )
            self._check_complete(version)
        await version.done.wait()
        if version.error is not None:
            raise version.error
        return self._version_counters(version)

    async def offer(self, table: PieceTable, dataset: AccessId) -> Pieces:
        """Serve a version the agent holds (whole or in part: asked of the BlockStore)."""
        held = await trio.to_thread.run_sync(self._held_pieces, table, limiter=self._disk_limiter)
        version = self._version(table, dataset, held)
        return Pieces(len(table), version.held)

    def add_dataset(self, access: DatasetAccess) -> None:
        """A dataset learnt later (a new subscription): proved to every open connection."""
        self._datasets[access.access_id] = access
        for state in list(self._links.values()):
            # A proof the peer sent before we knew the dataset is checked now.
            self._link_events(state.link, state.link.conn.add_dataset(access))
            if not state.link.conn.closed:
                state.link.conn.prove_access([access], trio.current_time())
                state.link.poke()

    def set_admission(self, admission: Admission) -> None:
        """What new connections present and check from now on (a renewed certificate); open
        connections keep theirs. The newer of the revocation lists held and `admission`'s
        stays in force (one in `admission` that is newer comes into force at once, as by
        `update_revocations`)."""
        offered = admission.revocations if isinstance(admission, FleetCertificate) else None
        if isinstance(admission, FleetCertificate) and self._revocations is not None:
            admission = replace(admission, revocations=self._revocations[1])
        self.peer_config = replace(self.peer_config, admission=admission)
        self._revocations = _held_list(admission)
        if offered is not None:
            self.update_revocations(offered)

    def update_revocations(self, signed: bytes) -> bool:
        """A revocation list learnt elsewhere (the hub, the agent's state): checked against
        the fleet key (IntegrityError or NotAdmitted if it is not the fleet's). If newer than
        the one held it comes into force at once: new handshakes check it, and every live
        connection is given it, which closes a revoked peer's (REVOKED) and passes the list
        to a peer holding an older one. True if it was newer."""
        admission = self.peer_config.admission
        if not isinstance(admission, FleetCertificate):
            raise InvalidInput("revocation lists belong to fleets admitted by certificate")
        offered = open_revocations(signed, admission)
        if not offered.newer(self._revocations[0] if self._revocations else None):
            return False
        self._adopt_revocations(admission, signed, offered)
        return True

    def on_revocations(self, listener: OnRevocations) -> None:
        """Call `listener(peer, news)` for each list a peer passed, taken or refused."""
        self._revocation_listeners.append(listener)

    def connected(self, dataset: AccessId | None = None) -> list[PeerId]:
        """Peers connected now (that proved `dataset`, if given)."""
        return sorted(
            peer
            for peer, state in self._links.items()
            if dataset is None or dataset in state.proved
        )

    def announced(self, version: ManifestId) -> list[PeerId]:
        """Peers connected now that announced `version` (a bitfield, even an empty one)."""
        return sorted(peer for peer, state in self._links.items() if version in state.announced)

    def status(self) -> EngineStatus:
        for state in self._states.values():
            self._count_bytes(state)
        planned = {v.version: v for v in self.planner.status().versions}
        return EngineStatus(
            port=self.port,
            connections=len(self._states),
            peers=tuple(c.frozen() for c in sorted(self._counters.values(), key=_peer_key)),
            refused=tuple(self._refused),
            versions=tuple(self._version_counters(v, planned) for v in self._versions.values()),
            uploads_running=sum(len(s.incoming) for s in self._states.values()),
        )

    # --- versions -------------------------------------------------------------------------

    def _version(self, table: PieceTable, dataset: AccessId, held: Pieces | None) -> _Version:
        version = self._versions.get(table.id)
        if version is None:
            version = _Version(table, dataset, held.bits if held is not None else 0)
            self._versions[table.id] = version
            for state in self._links.values():
                self._announce(state, version)
        return version

    def _held_pieces(self, table: PieceTable) -> Pieces:
        held = [i for i in range(len(table)) if all(self.blocks.has(b.id) for b in table.blocks(i))]
        return Pieces.of(len(table), held)

    def _announce(self, state: _LinkState, version: _Version) -> None:
        """A BITFIELD of what we hold: also says "I want this version" (empty)."""
        if version.dataset in state.proved:
            count = len(version.table)
            bits = Pieces(count, version.held).to_bytes()
            state.link.send(Bitfield(version.dataset, version.table.id, count, bits))

    def _check_complete(self, version: _Version) -> None:
        if version.fetching and self.planner.complete(version.table.id):
            version.done.set()

    def _version_counters(
        self, version: _Version, planned: dict[ManifestId, VersionStatus] | None = None
    ) -> VersionCounters:
        if planned is None:
            planned = {v.version: v for v in self.planner.status().versions}
        s = planned.get(version.table.id)
        count = len(version.table)
        if s is None:  # offered only, never fetched
            needed = count - version.held.bit_count()
            return VersionCounters(version.table.id, count, needed, 0, 0, 0, 0, needed == 0)
        return VersionCounters(
            s.version,
            s.pieces,
            s.pieces_needed,
            s.bytes_needed,
            s.bytes_from_store,
            s.bytes_from_peers,
            s.store_reads,
            s.pieces_needed == 0,
        )

    # --- the planner ----------------------------------------------------------------------

    def _plan(self, event: PlannerEvent) -> None:
        """Tell the planner one event and carry out its actions, one event at a time."""
        self._queue.append(event)
        if self._planning:
            return
        self._planning = True
        try:
            while self._queue:
                self._perform(self.planner.handle(self._queue.popleft(), trio.current_time()))
        finally:
            self._planning = False
        self._wake.set()

    async def _timers(self) -> None:
        while True:
            timers = [
                t for t in (self.planner.get_timer(), self.uploads.get_timer()) if t is not None
            ]
            at = min(timers) if timers else math.inf
            with trio.move_on_at(at):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if now >= at:
                self._planning = True
                try:
                    self._perform(self.planner.handle_timer(now))
                    while self._queue:
                        self._perform(self.planner.handle(self._queue.popleft(), now))
                finally:
                    self._planning = False
                self._serve_uploads()

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Assign(piece=piece, source=source):
                    self._assign(piece, source)
                case Cancel(piece=piece, source=PeerId() as peer):
                    state = self._links.get(peer)
                    request_id = state.asked.pop(piece, None) if state else None
                    if state is not None and request_id is not None:
                        state.outgoing.pop(request_id, None)
                        state.link.send(CancelMessage(request_id))
                case Cancel():
                    pass  # a store read cannot be called back: its answer is dropped
                case DropPeer(peer=peer, reason=reason):
                    counters = self._counters.get(peer)
                    if counters is not None:
                        counters.state, counters.last_error = "banned", reason
                    state = self._links.get(peer)
                    if state is not None:
                        state.link.close(Reason.OTHER, f"dropped: {reason}")
                case GaveUp(piece=piece, reason=reason):
                    version = self._versions.get(piece.version)
                    if version is not None and version.error is None:
                        version.error = VersionFailed(
                            f"piece {piece} of version {piece.version.short()} could not be "
                            f"fetched ({reason}): check the store and try again"
                        )
                        version.done.set()

    def _assign(self, piece: PieceRef, source: Source) -> None:
        version = self._versions[piece.version]
        if not isinstance(source, PeerId):
            assert self._nursery is not None
            self._nursery.start_soon(self._read_store, version, piece)
            return
        state = self._links.get(source)
        if state is None or state.link.conn.closed:
            self._plan(PieceFailed(piece, source))
            return
        conn = state.link.conn
        request_id = conn.new_request_id()
        expected = frozenset(b.id for b in version.table.blocks(piece.index))
        state.link.send(Request(request_id, version.dataset, piece.version, piece=piece.index))
        state.outgoing[request_id] = _Fetch(piece, expected)
        state.asked[piece] = request_id

    async def _read_store(self, version: _Version, piece: PieceRef) -> None:
        try:
            blocks = await trio.to_thread.run_sync(
                self._read_checked, version.table, piece.index, limiter=self._store_limiter
            )
        except (AetherError, OSError):
            self._plan(StoreFailed(piece))
            return
        await self._deliver(version, piece, blocks, STORE)

    def _read_checked(self, table: PieceTable, index: int) -> StoredBlocks:
        blocks = self.store.read_piece(table, index)
        _check_piece(table, index, blocks)
        return blocks

    async def _deliver(
        self, version: _Version, piece: PieceRef, blocks: StoredBlocks, source: Source
    ) -> None:
        """Sink a verified piece, then tell the planner and announce it to the peers."""
        bit = 1 << piece.index
        if (version.held | version.delivering) & bit:
            return  # a late duplicate (a store read the planner cancelled)
        version.delivering |= bit
        try:
            await trio.to_thread.run_sync(
                self.sink, version.table, piece.index, blocks, limiter=self._disk_limiter
            )
        except AetherError as exc:
            version.error = exc
            version.done.set()
            return
        finally:
            version.delivering &= ~bit
        version.held |= bit
        self._plan(PieceArrived(piece, source))
        for state in self._links.values():
            if version.dataset in state.proved:
                state.link.send(Have(version.dataset, piece.version, piece.index))
        self._check_complete(version)

    # --- connections ----------------------------------------------------------------------

    async def _accepted(self, stream: trio.SocketStream) -> None:
        if len(self._states) >= self.config.max_links:
            await trio.aclose_forcefully(stream)
            return
        await self._run_link(stream, peer_address(stream), initiator=False)

    async def _dialler(self, address: PeerAddress, scope: trio.CancelScope) -> None:
        wait = self.config.redial_min
        with scope:
            while address not in self._own_addresses:
                try:
                    stream = await dial(address)
                except OSError as exc:
                    self._refused.append(LinkStatus(str(address), "unreachable", str(exc)))
                else:
                    state = await self._run_link(stream, address, initiator=True)
                    peer = state.peer
                    counters = self._counters.get(peer) if peer is not None else None
                    if peer is not None and counters is not None and counters.state != "banned":
                        wait = self.config.redial_min  # it was a peer: retry soon
                        current = self._links.get(peer)
                        if current is not None:
                            # The peer is connected another way (it dialled us): redial only
                            # once that connection is gone.
                            await current.link.done.wait()
                await trio.sleep(wait)
                wait = min(wait * 2, self.config.redial_max)
        self._diallers.pop(address, None)

    async def _read_addresses(self, addresses: trio.MemoryReceiveChannel[AddressEvent]) -> None:
        async with addresses:
            async for event in addresses:
                if isinstance(event, AddressGone):
                    self.forget_address(event.address)
                else:
                    self.dial(event)

    async def _run_link(
        self, stream: trio.SocketStream, address: PeerAddress, initiator: bool
    ) -> _LinkState:
        conn = PeerConnection(self._connection_config(), initiator, self._datasets.values())
        link = PeerLink(stream, conn, address, self._link_events, self.config.read_size)
        state = _LinkState(link)
        self._states[link] = state
        try:
            await link.run()
        finally:
            self._states.pop(link, None)
            self._count_bytes(state)
        return state

    def _link_events(self, link: PeerLink, events: list[Event]) -> None:
        state = self._states.get(link)
        if state is None:
            return
        for event in events:
            self._link_event(state, event)

    def _link_event(self, state: _LinkState, event: Event) -> None:
        link = state.link
        if isinstance(event, Established):
            self._established(state, PeerId(event.peer.key), event.peer.agent)
            return
        if isinstance(event, ConnectionClosed):
            self._closed(state, event)
            return
        peer = state.peer
        if peer is None or self._links.get(peer) is not state:
            # A connection being replaced by another to the same peer, or one that ended in
            # the read that opened it: a list it passed still counts (the protocol checked it).
            if isinstance(event, RevocationsUpdated | RevocationsRefused):
                info = link.conn.peer
                self._peer_revocations(PeerId(info.key) if info else None, event)
            return
        counters = self._counters[peer]
        counters.last_seen = link.last_seen
        match event:
            case AccessProved(dataset=dataset):
                state.proved.add(dataset)
                for version in self._versions.values():
                    if version.dataset == dataset:
                        self._announce(state, version)
            case Bitfield():
                state.announced.add(event.manifest)
                self._announced(event.dataset, event.manifest)
                self._peer_bitfield(peer, event)
            case Have():
                self._announced(event.dataset, event.manifest)
                self._plan(PeerHave(peer, event.manifest, (event.piece,)))
            case HaveRange():
                self._announced(event.dataset, event.manifest)
                self._plan(PeerHave(peer, event.manifest, tuple(range(event.start, event.end))))
            case Request():
                self._peer_request(state, peer, event)
            case RecordRequest():
                self._record_request(state, event)
            case Record():
                self._peer_record(state, event)
            case Done(request_id=request_id) | Reject(request_id=request_id) if (
                request_id in state.record_fetches
            ):
                self._record_answered(state, event)
            case CancelMessage(request_id=request_id) if request_id in state.records_served:
                state.records_served.discard(request_id)
            case CancelMessage(request_id=request_id):
                piece = state.incoming.pop(request_id, None)
                if piece is not None:
                    self.uploads.cancel(peer, piece)
            case Block():
                self._peer_block(state, peer, event)
            case Done(request_id=request_id):
                self._peer_done(state, peer, request_id)
            case Reject(request_id=request_id):
                fetch = state.outgoing.pop(request_id, None)
                if fetch is not None:
                    state.asked.pop(fetch.piece, None)
                    self._plan(PieceFailed(fetch.piece, peer))
            case RevocationsUpdated() | RevocationsRefused():
                self._peer_revocations(peer, event)

    # --- admission and revocation lists ---------------------------------------------------

    def _connection_config(self) -> PeerConfig:
        """The config of a new connection: the admission of now, and the clocks' offset."""
        return replace(self.peer_config, wall_offset=self.wall_clock() - trio.current_time())

    def _peer_revocations(self, peer: PeerId | None, news: RevocationNews) -> None:
        """A peer's connection took a newer list (it checked it) or refused one."""
        admission = self.peer_config.admission
        if isinstance(news, RevocationsUpdated) and isinstance(admission, FleetCertificate):
            held = self._revocations[0] if self._revocations else None
            if held is not None and news.seq <= held.seq:
                return  # one this engine already passed to every connection
            self._adopt_revocations(
                admission, news.signed, open_revocations(news.signed, admission)
            )
        for listener in self._revocation_listeners:
            listener(peer, news)

    def _adopt_revocations(
        self, admission: FleetCertificate, signed: bytes, held: RevocationList
    ) -> None:
        """In force for new handshakes, and given to every live connection (those still in
        their handshake too): a revoked peer's is closed, older lists are replaced."""
        self._revocations = (held, signed)
        self.peer_config = replace(
            self.peer_config, admission=replace(admission, revocations=signed)
        )
        now = trio.current_time()
        for state in list(self._states.values()):
            conn = state.link.conn
            if not conn.closed:
                self._link_events(state.link, conn.update_revocations(signed, now))
                state.link.poke()

    def _established(self, state: _LinkState, peer: PeerId, agent: str) -> None:
        link = state.link
        if peer == self.self_id:
            self._own_addresses.add(link.address)  # we dialled ourselves: not again
            link.close(Reason.NORMAL, "this is the same agent")
            return
        if link.conn.closed:
            return  # it ended in the same read (a goodbye right after its Auth)
        state.peer = peer
        current = self._links.get(peer)
        if current is not None and not current.link.conn.closed:
            # One connection per pair (protocol/peer.md): the one opened by the agent with
            # the lower identity key is kept, the same choice on both sides.
            if _opened_by_lower(current.link, self.self_id, peer) or not _opened_by_lower(
                link, self.self_id, peer
            ):
                link.close(Reason.NORMAL, "already connected")
                return
            self._links[peer] = state
            current.link.close(Reason.NORMAL, "already connected")
            self.uploads.peer_gone(peer)
        self._links[peer] = state
        counters = self._counters.get(peer)
        if counters is None:
            counters = self._counters[peer] = PeerCounters(peer, agent, str(link.address), "open")
        counters.state, counters.address, counters.agent = "open", str(link.address), agent
        counters.last_seen = link.last_seen
        link.conn.prove_access(self._datasets.values(), trio.current_time())
        link.poke()
        self._plan(PeerJoined(peer))

    def _closed(self, state: _LinkState, event: ConnectionClosed) -> None:
        self._records_gone(state)
        peer = state.peer
        failed = event.error is not None or event.reason not in (
            Reason.NORMAL,
            Reason.CONNECTION_LOST,
        )
        if peer is None:
            self._refused.append(
                LinkStatus(str(state.link.address), event.reason.name.lower(), event.text)
            )
            return
        counters = self._counters[peer]
        if failed:
            counters.errors += 1
            counters.last_error = event.text
        self._count_bytes(state)
        if self._links.get(peer) is not state:
            return
        del self._links[peer]
        if counters.state != "banned":
            counters.state = "gone"
        if (
            isinstance(event.error, RemoteProtocolError)
            and not isinstance(event.error, StreamTruncated)  # it died mid-block: only gone
            and state.outgoing
        ):
            # It broke the protocol while it owed us blocks (a block that fails its id, one
            # not of the piece asked for): the planner drops and avoids it.
            fetch = next(iter(state.outgoing.values()))
            self._plan(PieceFailed(fetch.piece, peer, bad_block=True))
        state.outgoing.clear()
        state.asked.clear()
        self.uploads.peer_gone(peer)
        self._plan(PeerGone(peer))

    def _count_bytes(self, state: _LinkState) -> None:
        if state.peer is None:
            return
        counters = self._counters.get(state.peer)
        if counters is None:
            return
        link = state.link
        counters.bytes_sent += link.bytes_sent - state.counted_sent
        counters.bytes_received += link.bytes_received - state.counted_received
        state.counted_sent, state.counted_received = link.bytes_sent, link.bytes_received

    def _announced(self, dataset: AccessId, manifest: ManifestId) -> None:
        if self.on_announce is not None:
            self.on_announce(dataset, manifest)

    # --- fetching from a peer -------------------------------------------------------------

    def _peer_bitfield(self, peer: PeerId, message: Bitfield) -> None:
        version = self._versions.get(message.manifest)
        if version is not None and message.count != len(version.table):
            return  # it cuts this version otherwise: nothing of it can be asked of this peer
        bits = Pieces.from_bytes(message.count, message.bits)
        self._plan(PeerBitfield(peer, message.manifest, bits))

    def _peer_block(self, state: _LinkState, peer: PeerId, block: Block) -> None:
        fetch = state.outgoing.get(block.request_id)
        if fetch is None:
            return  # an answer to a request we cancelled
        if block.block_id not in fetch.expected:
            # A block (its id checked by the protocol) that is not of the piece asked for.
            state.outgoing.pop(block.request_id)
            state.asked.pop(fetch.piece, None)
            self._plan(PieceFailed(fetch.piece, peer, bad_block=True))
            return
        fetch.got[block.block_id] = bytes(block.data)

    def _peer_done(self, state: _LinkState, peer: PeerId, request_id: int) -> None:
        fetch = state.outgoing.pop(request_id, None)
        if fetch is None:
            return
        state.asked.pop(fetch.piece, None)
        version = self._versions.get(fetch.piece.version)
        if version is None or fetch.got.keys() != fetch.expected:
            self._plan(PieceFailed(fetch.piece, peer))
            return
        blocks = [(b.id, fetch.got[b.id]) for b in version.table.blocks(fetch.piece.index)]
        assert self._nursery is not None
        self._nursery.start_soon(self._deliver, version, fetch.piece, blocks, peer)

    # --- serving a peer -------------------------------------------------------------------

    def _peer_request(self, state: _LinkState, peer: PeerId, request: Request) -> None:
        version = self._versions.get(request.manifest)
        index = request.piece
        if (
            version is None
            or index is None  # requests by block ids: this engine asks for pieces only
            or version.dataset != request.dataset
            or index >= len(version.table)
            or not version.held >> index & 1
        ):
            state.link.send(Reject(request.request_id, RejectReason.NOT_HAVE))
            return
        piece = PieceRef(request.manifest, index)
        if not self.uploads.request(peer, piece, version.table.size(index)):
            state.link.send(Reject(request.request_id, RejectReason.BUSY))
            return
        state.incoming[request.request_id] = piece
        self._serve_uploads()

    def _serve_uploads(self) -> None:
        assert self._nursery is not None
        for upload in self.uploads.serve(trio.current_time()):
            self._nursery.start_soon(self._upload, upload)
        self._wake.set()  # the upload cap's timer may have moved

    async def _upload(self, upload: UploadRequest) -> None:
        state = self._links.get(upload.peer)
        request_id = None
        if state is not None:
            request_id = next((r for r, p in state.incoming.items() if p == upload.piece), None)
        try:
            if state is None or request_id is None:
                return
            table = self._versions[upload.piece.version].table
            ids = [b.id for b in table.blocks(upload.piece.index)]
            try:
                data = await trio.to_thread.run_sync(
                    self.blocks.read, ids, limiter=self._disk_limiter
                )
            except AetherError:
                state.link.send(Reject(request_id, RejectReason.NOT_HAVE))
                return
            for block_id, stored in zip(ids, data, strict=True):
                if request_id not in state.incoming or not state.link.send(
                    Block(request_id, block_id, stored)
                ):
                    return  # cancelled, or the connection ended
                await state.link.flushed(UPLOAD_AHEAD)
            state.link.send(Done(request_id))
        finally:
            if state is not None and request_id is not None:
                state.incoming.pop(request_id, None)
            self.uploads.finished(upload.peer, upload.piece)
            self._serve_uploads()

    # --- records: sealed manifests asked of peers, and served to them --------------------

    async def fetch_manifest(
        self, dataset: AccessId, manifest_id: ManifestId, timeout: float
    ) -> PeerRecord | None:
        """A version's sealed manifest from a peer: asked of connected peers that proved
        `dataset` (those that announced the version first), one at a time, each with its
        share of the time left; a peer that announces the version after it was asked is asked
        again. While links are being made (static peers, discovery) a peer that proves the
        dataset within `timeout` is asked too. One agent of the LAN reads the store: the
        owner by rendezvous hashing of the manifest over this agent and the peers that proved
        the dataset. The others wait (up to `timeout`) for a peer to announce the version,
        which it does once it holds the manifest. None if no peer sent it in time. The bytes
        are unchecked: the caller verifies them (`record_refused` if false)."""
        deadline = trio.current_time() + timeout
        asked: dict[PeerId, bool] = {}  # peer -> whether it had announced the version then
        while trio.current_time() < deadline:
            candidates = [
                p
                for p in self._record_peers(dataset, manifest_id)
                if p not in asked or (not asked[p] and manifest_id in self._links[p].announced)
            ]
            if not candidates:
                if not self._links_coming(dialling=not asked) and (
                    self._manifest_owner(dataset, manifest_id) == self.self_id
                ):
                    return None  # every peer that could send it was asked: ours to read
                await trio.sleep(min(RECORD_POLL, max(0.0, deadline - trio.current_time())))
                continue
            peer = candidates[0]
            asked[peer] = manifest_id in self._links[peer].announced
            share = (deadline - trio.current_time()) / len(candidates)
            data = await self._ask_manifest(peer, dataset, manifest_id, share)
            if data is not None:
                return PeerRecord(peer, data)
        return None

    def _manifest_owner(self, dataset: AccessId, manifest_id: ManifestId) -> PeerId:
        """Who of this agent and the peers that proved `dataset` reads the manifest from the
        store: the same answer on every agent that sees the same peers."""
        members = [self.self_id, *self.connected(dataset)]
        return max(members, key=lambda m: (weights(manifest_id, m, 1)[0], m.raw))

    def record_refused(self, peer: PeerId, why: str) -> None:
        """A record `peer` sent did not verify: counted against it (status shows why)."""
        counters = self._counters.get(peer)
        if counters is not None:
            counters.errors += 1
            counters.last_error = why

    def _links_coming(self, dialling: bool) -> bool:
        """Whether a peer may soon be asked: a link in its handshake, a peer that has proved
        no dataset yet, or (`dialling`: none asked yet) a dialled address not connected."""
        if any(s.peer is None for s in self._states.values()):
            return True
        if any(not s.proved for s in self._links.values()):
            return True
        if not dialling:
            return False
        connected = {s.link.address for s in self._links.values()}
        return any(address not in connected for address in self._diallers)

    def _record_peers(self, dataset: AccessId, manifest_id: ManifestId) -> list[PeerId]:
        proved = self.connected(dataset)
        return sorted(proved, key=lambda p: manifest_id not in self._links[p].announced)

    async def _ask_manifest(
        self, peer: PeerId, dataset: AccessId, manifest_id: ManifestId, timeout: float
    ) -> bytes | None:
        state = self._links.get(peer)
        if state is None or state.link.conn.closed:
            return None
        request_id = state.link.conn.new_request_id()
        ref = manifest_id.digest
        fetch = _RecordFetch(RecordAssembly(RecordKind.MANIFEST, dataset, ref, MAX_MANIFEST_BYTES))
        state.record_fetches[request_id] = fetch
        try:
            asking = RecordRequest(request_id, RecordKind.MANIFEST, dataset, ref)
            try:
                if not state.link.send(asking):
                    return None
            except LocalProtocolError:
                return None  # its requests are all open (the planner's): ask another
            with trio.move_on_after(timeout):
                await fetch.answered.wait()
            if not fetch.answered.is_set() and not state.link.conn.closed:
                state.link.send(CancelMessage(request_id))
            return fetch.data
        finally:
            state.record_fetches.pop(request_id, None)

    def _peer_record(self, state: _LinkState, record: Record) -> None:
        fetch = state.record_fetches.get(record.request_id)
        if fetch is None or fetch.answered.is_set():
            return  # pushed (tag histories: not taken yet), or an answer given up on
        try:
            whole = fetch.assembly.add(record)
        except RemoteProtocolError as exc:
            fetch.answered.set()  # nothing of it is used
            state.link.close(Reason.PROTOCOL_ERROR, str(exc))
            return
        if whole is not None:
            fetch.data = whole

    def _record_answered(self, state: _LinkState, answer: Done | Reject) -> None:
        fetch = state.record_fetches[answer.request_id]
        if isinstance(answer, Reject) or not fetch.assembly.complete:
            fetch.data = None  # refused, or DONE before the last chunk: not whole
        fetch.answered.set()

    def _records_gone(self, state: _LinkState) -> None:
        for fetch in state.record_fetches.values():
            if not fetch.assembly.complete:
                fetch.data = None
            fetch.answered.set()
        state.records_served.clear()

    def _record_request(self, state: _LinkState, request: RecordRequest) -> None:
        """A peer asked for a record; the protocol already refused (FORBIDDEN) a dataset it
        did not prove. Manifests are served from the RecordSource; other kinds are not."""
        if (
            request.kind is not RecordKind.MANIFEST
            or self.records is None
            or request.dataset is None
            or request.dataset not in self._datasets
            or len(request.ref) != MANIFEST_ID_SIZE
        ):
            state.link.send(Reject(request.request_id, RejectReason.NOT_HAVE))
            return
        state.records_served.add(request.request_id)
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_manifest, state, request)

    async def _serve_manifest(self, state: _LinkState, request: RecordRequest) -> None:
        request_id, dataset = request.request_id, request.dataset
        assert self.records is not None and dataset is not None
        try:
            try:
                data = await trio.to_thread.run_sync(
                    self.records.sealed_manifest,
                    dataset,
                    ManifestId(request.ref),
                    limiter=self._disk_limiter,
                )
            except (AetherError, OSError):
                data = None
            if data is None or len(data) > MAX_MANIFEST_BYTES:
                state.link.send(Reject(request_id, RejectReason.NOT_HAVE))
                return
            for chunk in record_chunks(request_id, RecordKind.MANIFEST, dataset, request.ref, data):
                if request_id not in state.records_served or state.link.conn.closed:
                    return  # cancelled, or the connection ended
                state.link.send(chunk)
                await state.link.flushed()
            state.link.send(Done(request_id))
        finally:
            state.records_served.discard(request_id)


def _check_piece(table: PieceTable, index: int, blocks: StoredBlocks) -> None:
    """A store read returned exactly this piece's blocks, each matching its id."""
    expected = [b.id for b in table.blocks(index)]
    if [block_id for block_id, _ in blocks] != expected:
        raise IntegrityError(f"the store read of piece {index} returned other blocks")
    for block_id, stored in blocks:
        if BlockId.of(stored) != block_id:
            raise IntegrityError(f"block {block_id.short()} from the store is corrupt")


def _held_list(admission: Admission) -> tuple[RevocationList, bytes] | None:
    if isinstance(admission, FleetCertificate) and admission.revocations is not None:
        return open_revocations(admission.revocations, admission), admission.revocations
    return None


def _opened_by_lower(link: PeerLink, own: PeerId, peer: PeerId) -> bool:
    """Whether the agent with the lower identity key opened this connection."""
    return link.initiator == (own.raw < peer.raw)


def _peer_key(counters: PeerCounters) -> bytes:
    return counters.peer.raw


def _is_a_swarm(engine: SwarmEngine) -> Swarm:
    return engine  # mypy checks that the engine is what the agent's seam names
