"""Random event sequences: the planner keeps its limits and always finishes from the store."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aetherfs.planner import (
    STORE,
    Assign,
    Bitfield,
    Cancel,
    DropPeer,
    FetchPlanner,
    PeerGone,
    PeerHave,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    PieceRef,
    PlannerConfig,
    StoreFailed,
    VersionWanted,
)
from aetherfs.planner.ids import PeerId
from tests.planner.helpers import peer, table_of

PIECES = 12
CONFIG = PlannerConfig(store_reads=3, peer_requests=2, store_attempts=1000)

step = st.one_of(
    st.tuples(st.just("join"), st.integers(0, 3), st.integers(0, 2**PIECES - 1)),
    st.tuples(st.just("have"), st.integers(0, 3), st.integers(0, PIECES - 1)),
    st.tuples(st.just("gone"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("arrive"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("fail"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 40), st.just(0)),
)


class Checked:
    """A planner whose every answer is checked against what it was told."""

    def __init__(self) -> None:
        self.table = table_of(PIECES)
        self.planner = FetchPlanner(peer(99), CONFIG)
        self.flight: dict[PieceRef, object] = {}
        self.have: set[int] = set()
        self.peers: dict[PeerId, int] = {}
        self.banned: set[PeerId] = set()
        self.now = 0.0

    def apply(self, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, Assign):
                assert action.piece.index not in self.have
                assert action.piece not in self.flight
                if action.source != STORE:
                    assert action.source in self.peers and action.source not in self.banned
                    assert self.peers[action.source] >> action.piece.index & 1
                self.flight[action.piece] = action.source
            elif isinstance(action, Cancel):
                assert self.flight.pop(action.piece, None) == action.source
            elif isinstance(action, DropPeer):
                self.banned.add(action.peer)
                self.forget(action.peer)
        store = sum(1 for s in self.flight.values() if s == STORE)
        assert store <= CONFIG.store_reads
        for p in self.peers:
            assert sum(1 for s in self.flight.values() if s == p) <= CONFIG.peer_requests
        timer = self.planner.get_timer()
        assert timer is None or timer >= self.now
        for version in self.planner._versions.values():  # the rarity buckets partition
            union = 0
            for k, bucket in enumerate(version.by_rarity):
                assert not union & bucket
                union |= bucket
                assert all(version.rarity[i] == k for i in range(PIECES) if bucket >> i & 1)
            assert union == (1 << PIECES) - 1
            held = [sum(bits >> i & 1 for bits in self.peers.values()) for i in range(PIECES)]
            assert list(version.rarity) == held

    def forget(self, p: PeerId) -> None:
        self.peers.pop(p, None)
        for piece, source in list(self.flight.items()):
            if source == p:
                del self.flight[piece]

    def tell(self, event: object) -> None:
        self.apply(self.planner.handle(event, self.now))  # type: ignore[arg-type]

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (timer := self.planner.get_timer()) is not None and timer <= end:
            self.now = max(self.now, timer)
            self.apply(self.planner.handle_timer(self.now))
        self.now = end

    def nth_flight(self, n: int) -> tuple[PieceRef, object] | None:
        items = sorted(self.flight.items(), key=lambda kv: kv[0].index)
        return items[n % len(items)] if items else None

    def arrive(self, piece: PieceRef, source: object) -> None:
        del self.flight[piece]
        self.have.add(piece.index)
        self.tell(PieceArrived(piece, source))  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(step, max_size=40), st.booleans(), st.lists(st.integers(0, 2**PIECES - 1), max_size=3)
)
def test_random_events_keep_the_limits_and_the_store_always_finishes(
    steps: list, peers_leave: bool, early: list[int]
) -> None:
    c = Checked()
    for n, bits in enumerate(early):  # peers that announced the version before this agent
        c.peers[peer(n)] = bits
        c.tell(PeerJoined(peer(n), {c.table.id: Bitfield(PIECES, bits)}))
    c.advance(5.0 if early else 0.0)
    c.tell(VersionWanted(c.table))
    for kind, a, b in steps:
        c.advance(0.05)  # as a driver does: timers due fire before a later event
        if kind == "join" and peer(a) not in c.banned:
            c.forget(peer(a))
            c.peers[peer(a)] = b
            c.tell(PeerJoined(peer(a), {c.table.id: Bitfield(PIECES, b)}))
        elif kind == "have" and peer(a) in c.peers:
            c.peers[peer(a)] |= 1 << b
            c.tell(PeerHave(peer(a), c.table.id, (b,)))
        elif kind == "gone" and peer(a) in c.peers:
            c.forget(peer(a))
            c.tell(PeerGone(peer(a)))
        elif kind == "arrive" and (found := c.nth_flight(a)):
            c.arrive(*found)
        elif kind == "fail" and (found := c.nth_flight(a)):
            piece, source = found
            del c.flight[piece]
            if source == STORE:
                c.tell(StoreFailed(piece))
            else:
                c.tell(PieceFailed(piece, source, bad_block=b))  # type: ignore[arg-type]
        elif kind == "wait":
            c.advance(a / 4)
    # Then every store read succeeds, and the peers leave or stay silent: it completes.
    if peers_leave:
        for p in list(c.peers):
            c.forget(p)
            c.tell(PeerGone(p))
    for _ in range(20 * PIECES):
        if c.planner.complete(c.table.id):
            break
        reads = [(piece, s) for piece, s in sorted(c.flight.items()) if s == STORE]
        if reads:
            c.arrive(*reads[0])
        else:
            c.advance(60.0)  # peers never answer: their deadlines pass
    assert c.planner.complete(c.table.id)
    assert c.planner.status().versions[0].pieces_needed == 0
