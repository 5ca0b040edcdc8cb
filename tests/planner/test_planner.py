"""The planner driven on explicit times: no clock, no sleeping."""

from aetherfs.planner import (
    STORE,
    Assign,
    BandwidthPolicy,
    Bitfield,
    Cancel,
    DropPeer,
    FetchPlanner,
    GaveUp,
    PeerBitfield,
    PeerGone,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    PieceRef,
    PlannerConfig,
    StoreFailed,
    VersionWanted,
)
from aetherfs.planner.rendezvous import in_read_order, store_start
from tests.planner.helpers import Lan, MiB, peer, table_of

ME = peer(100)


def bits(indices: list[int]) -> int:
    return sum(1 << i for i in indices)


def assigned(actions: list[object]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def test_with_no_peers_every_piece_goes_to_the_store_at_once_at_full_concurrency() -> None:
    table = table_of(20)
    planner = FetchPlanner(ME, PlannerConfig(store_reads=8))
    first = assigned(planner.handle(VersionWanted(table), now=0.0))
    order = list(in_read_order((1 << 20) - 1, store_start(ME, table.id, 20)))
    assert [(a.piece.index, a.source) for a in first] == [(i, STORE) for i in order[:8]]
    assert planner.get_timer() is None  # nothing to wait for but the reads themselves
    now, done = 0.0, 0
    pending = [a.piece for a in first]
    while pending:
        now += 0.5
        more = assigned(planner.handle(PieceArrived(pending.pop(0), STORE), now))
        done += 1
        assert all(a.source == STORE for a in more)
        pending += [a.piece for a in more]
        assert planner.status().store_in_flight == min(8, 20 - done)
    assert planner.complete(table.id)
    status = planner.status().versions[0]
    assert status.store_reads == 20 and status.bytes_from_store == table.total_size
    assert status.pieces_needed == 0 and status.bytes_from_peers == 0


def test_held_pieces_are_not_fetched() -> None:
    table = table_of(10)
    planner = FetchPlanner(ME)
    actions = assigned(planner.handle(VersionWanted(table, Bitfield.of(10, range(7))), 0.0))
    assert sorted(a.piece.index for a in actions) == [7, 8, 9]


def test_one_lan_reads_the_store_about_once_per_piece_and_beats_the_store_alone() -> None:
    table = table_of(64)  # a 256 MiB version
    lan = Lan(table, agents=10)
    lan.start()
    lan.run()
    assert len(lan.done_at) == 10
    reads = sum(lan.store_reads.values())
    assert len(lan.store_reads) == 64 and reads <= 64 * 1.05, reads
    alone = (64 / 8) * lan.store_time  # one agent, 8 reads at a time
    assert max(lan.done_at.values()) < alone


def test_agents_that_start_within_the_announce_grace_still_read_once_per_piece() -> None:
    import random

    rng = random.Random(1)
    lan = Lan(table_of(128), agents=20)
    lan.start(starts=[rng.uniform(0, 1.5) for _ in range(20)])
    lan.run()
    assert len(lan.done_at) == 20
    assert sum(lan.store_reads.values()) == 128


def test_the_same_inputs_give_the_same_outputs() -> None:
    def run() -> list[tuple[float, int, object]]:
        lan = Lan(table_of(40), agents=6, silent={2})
        lan.start()
        lan.run()
        return list(lan.log)

    first = run()
    assert first == run()
    assert len(first) > 40


def test_a_peer_vanishing_mid_transfer_loses_its_pieces_to_others() -> None:
    table = table_of(1)
    planner = FetchPlanner(ME)
    full = {table.id: Bitfield.full(1)}
    planner.handle(PeerJoined(peer(1), full), 0.0)
    (first,) = assigned(planner.handle(VersionWanted(table), 0.0))
    assert first.source == peer(1)
    planner.handle(PeerJoined(peer(2), full), 0.1)
    (again,) = assigned(planner.handle(PeerGone(peer(1)), 0.5))
    assert again.piece == first.piece and again.source == peer(2)


def test_a_lan_agent_vanishing_before_its_store_reads_land_is_covered_by_the_others() -> None:
    table = table_of(64)
    lan = Lan(table, agents=6)
    lan.start()
    lan.vanish(0.3, agent=3)  # before its first store reads finish; noticed 1 s later
    lan.run()
    assert set(lan.done_at) == {0, 1, 2, 4, 5}
    owned = [i for i in range(64) if lan.planners[0].owner(PieceRef(table.id, i)) == lan.ids[3]]
    assert owned == []  # nobody owns anything for the vanished agent any more
    assert sum(lan.store_reads.values()) <= 64 + 64 / 6 + 8  # its share read again at most


def test_a_missed_deadline_moves_the_piece_to_another_peer_and_then_to_the_store() -> None:
    table = table_of(1)
    planner = FetchPlanner(ME, PlannerConfig(peer_attempts=2))
    full = {table.id: Bitfield.full(1)}
    planner.handle(PeerJoined(peer(1), full), 0.0)
    planner.handle(PeerJoined(peer(2), full), 0.0)
    (first,) = assigned(planner.handle(VersionWanted(table), 0.0))
    assert isinstance(first.source, type(peer(1))) and first.deadline is not None
    # 1 s plus 4 MiB at 1 MB/s
    assert abs(first.deadline - (1.0 + 4 * MiB / 1e6)) < 1e-9
    assert planner.get_timer() == first.deadline
    assert planner.handle_timer(first.deadline - 0.01) == []
    actions = planner.handle_timer(first.deadline)
    other = peer(2) if first.source == peer(1) else peer(1)
    assert actions[0] == Cancel(first.piece, first.source)
    (second,) = assigned(actions)
    assert second.source == other
    assert second.deadline is not None
    actions = planner.handle_timer(second.deadline)
    assert actions[0] == Cancel(first.piece, other)
    assert [a.source for a in assigned(actions)] == [STORE]
    # the late piece may still come from the first peer: taken, and the store read cancelled
    after = planner.handle(PieceArrived(first.piece, first.source), second.deadline + 1)
    assert after == [Cancel(first.piece, STORE)]
    assert planner.complete(table.id)
    misses = {p.peer: p.misses for p in planner.status().peers}
    assert misses == {peer(1): 1, peer(2): 1}


def test_silent_peers_in_a_lan_cost_time_not_completion() -> None:
    lan = Lan(table_of(64), agents=5, silent={1})
    lan.start()
    lan.run()
    assert len(lan.done_at) == 5
    # The silent agent's share (a fifth) is read again once, by the agents it failed.
    assert sum(lan.store_reads.values()) <= 64 * 1.2 + 4 * 4
    alone = 64 / 8 * lan.store_time
    first_deadline = 1.0 + 4 * MiB / 1e6  # the most a silent peer can cost
    assert max(lan.done_at.values()) <= alone + first_deadline


def test_a_peer_that_sends_a_bad_block_is_dropped_and_never_asked_again() -> None:
    table = table_of(4)
    planner = FetchPlanner(ME)
    full = {table.id: Bitfield.full(4)}
    planner.handle(PeerJoined(peer(1), full), 0.0)
    actions = assigned(planner.handle(VersionWanted(table), 0.0))
    assert {a.source for a in actions} == {peer(1)}
    bad = PieceFailed(actions[0].piece, peer(1), bad_block=True)
    answer = planner.handle(bad, 0.2)
    assert answer[0] == DropPeer(peer(1), "sent a block that does not match its id")
    assert {a.source for a in assigned(answer)} == {STORE}
    assert planner.status().banned == (peer(1),)
    again = planner.handle(PeerJoined(peer(1), full), 0.3)  # it comes back: refused
    assert again == [DropPeer(peer(1), "sent a block that does not match its id")]
    planner.handle(PeerJoined(peer(2), full), 0.4)
    assert all(p.peer != peer(1) for p in planner.status().peers)


def test_a_corrupt_agent_in_a_lan_is_avoided() -> None:
    lan = Lan(table_of(32), agents=5, corrupt={4})
    lan.start()
    lan.run()
    assert {0, 1, 2, 3} <= set(lan.done_at)
    corrupt = lan.ids[4]
    for agent in range(4):
        asks = [a for t, n, a in lan.log if n == agent and isinstance(a, Assign)]
        to_bad = [a for a in asks if a.source == corrupt]
        assert len(to_bad) <= 4  # only the requests in flight when the first bad block came
        assert corrupt in lan.planners[agent].status().banned


def test_an_owner_that_never_delivers_loses_its_pieces_after_its_patience() -> None:
    config = PlannerConfig(owner_patience=5.0)
    lan = Lan(table_of(32), agents=4, stuck={2}, config=config)
    lan.start()
    lan.run(until=100)
    assert {0, 1, 3} <= set(lan.done_at)
    assert max(lan.done_at[a] for a in (0, 1, 3)) < 5.0 + 2.0 + 4 * lan.store_time


def test_store_errors_are_retried_with_backoff_then_given_up() -> None:
    table = table_of(1)
    planner = FetchPlanner(ME, PlannerConfig(store_attempts=3, store_retry=1.0))
    (read,) = assigned(planner.handle(VersionWanted(table), 0.0))
    assert planner.handle(StoreFailed(read.piece), 1.0) == []
    assert planner.get_timer() == 2.0
    assert assigned(planner.handle_timer(2.0))[0].source == STORE
    planner.handle(StoreFailed(read.piece), 2.5)
    assert planner.get_timer() == 4.5
    planner.handle_timer(4.5)
    actions = planner.handle(StoreFailed(read.piece), 5.0)
    assert actions == [GaveUp(read.piece, "the store failed it 3 times")]
    assert planner.get_timer() is None and not planner.complete(table.id)


def test_a_higher_priority_version_gets_the_store_first() -> None:
    low, high = table_of(8, "low"), table_of(8, "high")
    planner = FetchPlanner(ME, PlannerConfig(store_reads=4))
    assert len(assigned(planner.handle(VersionWanted(low, priority=0), 0.0))) == 4
    planner.handle(VersionWanted(high, priority=5), 0.0)
    for index in range(4):
        (next_read,) = assigned(planner.handle(PieceArrived(PieceRef(low.id, index), STORE), 1.0))
        assert next_read.piece.version == high.id


def _drive_capped(cap: float, pieces: int, with_peer: bool) -> list[tuple[float, int]]:
    """Pieces complete 10 ms after they start; returns (start time, bytes) of each."""
    table = table_of(pieces)
    policy = BandwidthPolicy(
        store_read=None if with_peer else cap, peer_download=cap if with_peer else None
    )
    planner = FetchPlanner(ME, PlannerConfig(), policy)
    if with_peer:
        planner.handle(PeerJoined(peer(1), {table.id: Bitfield.full(pieces)}), 0.0)
    started: list[tuple[float, int]] = []
    events: list[tuple[float, Assign]] = []
    now = 0.0

    def take(actions: list[object]) -> None:
        for a in assigned(actions):
            started.append((now, a.size if with_peer else table.read(a.piece.index).length))
            events.append((now + 0.01, a))

    take(planner.handle(VersionWanted(table), now))
    while not planner.complete(table.id):
        timer = planner.get_timer()
        events.sort(key=lambda e: e[0])
        if events and (timer is None or events[0][0] <= timer):
            now, a = events.pop(0)
            take(planner.handle(PieceArrived(a.piece, a.source), now))
        else:
            assert timer is not None
            now = timer
            take(planner.handle_timer(now))
    return started


def test_store_and_peer_caps_hold_over_time() -> None:
    cap = 8 * MiB  # two 4 MiB pieces a second
    for with_peer in (False, True):
        started = _drive_capped(cap, 40, with_peer)
        assert len(started) == 40
        total = 0
        for when, size in started:
            total += size
            assert total <= cap * 1.0 + cap * when + 4 * MiB, (when, total)
        last = started[-1][0]
        assert 160 * MiB / cap - 2 <= last <= 160 * MiB / cap  # as fast as the cap allows


def test_the_rarest_piece_a_peer_has_is_asked_first() -> None:
    table = table_of(3)
    planner = FetchPlanner(ME, PlannerConfig(peer_requests=1))
    planner.handle(PeerJoined(peer(1), {table.id: Bitfield.of(3, [0, 1, 2])}), 0.0)
    planner.handle(PeerJoined(peer(2), {table.id: Bitfield.of(3, [0, 2])}), 0.0)
    planner.handle(PeerJoined(peer(3), {table.id: Bitfield.of(3, [2])}), 0.0)
    asks = {a.source: a.piece.index for a in assigned(planner.handle(VersionWanted(table), 0.0))}
    # piece 1 has one holder, 0 two, 2 three: each peer gets the rarest piece it has
    assert asks[peer(1)] == 1 and asks[peer(2)] == 0 and asks[peer(3)] == 2


def test_the_piece_selector_is_pluggable() -> None:
    from aetherfs.planner import InOrder

    table = table_of(8)
    planner = FetchPlanner(ME, PlannerConfig(peer_requests=3), selector=InOrder())
    planner.handle(PeerJoined(peer(1), {table.id: Bitfield.of(8, [1, 2, 4, 6, 7])}), 0.0)
    planner.handle(PeerJoined(peer(2), {table.id: Bitfield.of(8, [6])}), 0.0)
    asks: dict[object, set[int]] = {}
    for a in assigned(planner.handle(VersionWanted(table), 0.0)):
        asks.setdefault(a.source, set()).add(a.piece.index)
    assert asks[peer(1)] == {1, 2, 4} and asks[peer(2)] == {6}  # lowest first, not rarest


def test_live_peers_silent_about_a_version_share_its_store_reads_until_the_grace_is_up() -> None:
    table = table_of(40)
    config = PlannerConfig(announce_grace=2.0)
    planner = FetchPlanner(ME, config)
    planner.handle(PeerJoined(peer(1)), 0.0)
    reads = assigned(planner.handle(VersionWanted(table), 0.0))
    mine = [i for i in range(40) if planner.owner(PieceRef(table.id, i)) == ME]
    assert 0 < len(mine) < 40  # peer 1 may want it too: it owns the rest for now
    start = store_start(ME, table.id, 40)
    assert [a.piece.index for a in reads] == [i for i in in_read_order(bits(mine), start)][:8]
    assert planner.get_timer() == 2.0
    later = assigned(planner.handle_timer(2.0))  # it never said it wants the version
    assert all(planner.owner(PieceRef(table.id, i)) == ME for i in range(40))
    assert len(later) == 0  # the store slots are still full: the rest follow as reads land
    more = assigned(planner.handle(PieceArrived(reads[0].piece, STORE), 2.5))
    assert [a.source for a in more] == [STORE]


def test_planner_state_for_a_5_gib_version_and_100_peers_is_small_and_quick() -> None:
    import random
    import time
    import tracemalloc

    from aetherfs.core.ids import ManifestId
    from aetherfs.planner import PeerHave, PieceTable
    from tests.planner.helpers import GiB, big_manifest, digest

    table = PieceTable.of_manifest(ManifestId(digest("m")), big_manifest(5 * GiB))
    count = len(table)
    rng = random.Random(1)
    fields = [Bitfield(count, rng.getrandbits(count)) for _ in range(100)]
    peers = [peer(n) for n in range(100)]
    tracemalloc.start()
    start = time.process_time()
    planner = FetchPlanner(ME)
    for p, field in zip(peers, fields, strict=True):
        planner.handle(PeerJoined(p, {table.id: field}), 0.0)
    pending = assigned(planner.handle(VersionWanted(table), 0.0))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    now, events = 0.0, 0
    while pending:
        action = pending.pop(0)
        now += 0.001
        pending += assigned(planner.handle(PieceArrived(action.piece, action.source), now))
        planner.handle(PeerHave(peers[rng.randrange(100)], table.id, (rng.randrange(count),)), now)
        events += 2
    spent = time.process_time() - start
    assert planner.complete(table.id)
    # Measured: 0.24 MiB for 100 peers' bitfields, rarity, owners and ties of 1,280 pieces
    # (the table itself is 3.3 MiB: test_pieces); 0.3 ms of CPU per event, joins included.
    assert held < 1 * MiB, held
    assert spent < 5.0, spent
    print(f"planner: {held / MiB:.2f} MiB, {spent / events * 1000:.2f} ms per event")


def test_dropping_a_version_cancels_its_requests_and_status_counts_by_source() -> None:
    from aetherfs.planner import VersionDropped

    table = table_of(12)
    planner = FetchPlanner(ME, PlannerConfig(store_reads=2, peer_requests=1))
    planner.handle(PeerJoined(peer(1), {table.id: Bitfield.of(12, [11])}), 0.0)
    first = assigned(planner.handle(VersionWanted(table), 0.0))
    # peer 1 announced the version: it reads its own share, this agent the rest
    mine = [i for i in range(11) if planner.owner(PieceRef(table.id, i)) == ME]
    assert len(mine) >= 3
    expected = {(11, peer(1)), (mine[0], STORE), (mine[1], STORE)}
    assert {(a.piece.index, a.source) for a in first} == expected
    planner.handle(PieceArrived(PieceRef(table.id, 11), peer(1)), 0.3)
    planner.handle(PieceArrived(PieceRef(table.id, mine[0]), STORE), 0.4)
    status = planner.status()
    (version,) = status.versions
    assert version.bytes_from_peers == version.bytes_from_store == 4 * MiB
    assert version.pieces_needed == 10 and version.pieces_in_flight == 2
    assert version.bytes_needed == 40 * MiB
    assert [(p.peer, p.pieces_received, p.bytes_received) for p in status.peers] == [
        (peer(1), 1, 4 * MiB)
    ]
    cancelled = planner.handle(VersionDropped(table.id), 0.5)
    assert sorted(a.piece.index for a in cancelled if isinstance(a, Cancel)) == mine[1:3]
    assert planner.status().versions == () and planner.status().store_in_flight == 0
    assert planner.get_timer() is None


def test_pieces_with_blocks_the_peer_protocol_does_not_carry_come_from_the_store() -> None:
    from aetherfs.core.ids import ManifestId
    from aetherfs.planner import PieceTable
    from tests.planner.helpers import digest, ref

    refs = [ref(0, 0, 100_000), ref(1, 0, 300_000), ref(2, 0, 100_000)]
    table = PieceTable.of_refs(ManifestId(digest("big blocks")), refs)
    big = table.with_blocks_over(262_208)
    assert len(big) == 1
    (index,) = big
    planner = FetchPlanner(ME, PlannerConfig(store_reads=1))
    planner.handle(PeerJoined(peer(1), {table.id: Bitfield.full(3)}), 0.0)
    actions = assigned(planner.handle(VersionWanted(table, store_only=big), 0.0))
    assert {(a.piece.index, a.source) for a in actions} == {
        (i, peer(1)) for i in range(3) if i != index
    } | {(index, STORE)}


def test_two_requests_to_one_peer_past_their_deadlines_in_one_timer_call() -> None:
    table = table_of(2)
    planner = FetchPlanner(ME, PlannerConfig(peer_requests=2))
    planner.handle(PeerJoined(peer(1), {table.id: Bitfield.full(2)}), 0.0)
    asks = assigned(planner.handle(VersionWanted(table), 0.0))
    assert {a.source for a in asks} == {peer(1)} and len(asks) == 2
    late = max(a.deadline or 0.0 for a in asks) + 1  # both passed: the first miss ends both
    actions = planner.handle_timer(late)
    assert {(c.piece, c.source) for c in actions if isinstance(c, Cancel)} == {
        (a.piece, peer(1)) for a in asks
    }


def test_a_late_agent_leaves_to_an_earlier_member_the_pieces_it_is_probably_reading() -> None:
    from aetherfs.planner.rendezvous import Rendezvous

    def reading_and_mine(name: str) -> tuple[set[int], set[int]]:
        table = table_of(40, name)
        # Alone after its grace, peer 1 owned everything and read 4 from its own start on.
        reading = set(list(in_read_order((1 << 40) - 1, store_start(peer(1), table.id, 40)))[:4])
        both = Rendezvous(table.id, 40)
        both.add(ME)
        both.add(peer(1))
        return reading, {i for i in range(40) if both.owner(i) == ME}

    name = next(n for n in map(str, range(100)) if len(set.intersection(*reading_and_mine(n))) > 1)
    reading, mine = reading_and_mine(name)
    table = table_of(40, name)
    planner = FetchPlanner(ME, PlannerConfig(store_reads=4, owner_patience=10.0))
    planner.handle(PeerJoined(peer(1)), 0.0)
    planner.handle(PeerBitfield(peer(1), table.id, Bitfield(40)), 0.0)  # it started at 0
    reads = assigned(planner.handle(VersionWanted(table), 10.0))
    assert len(reads) == 4 and not {a.piece.index for a in reads} & reading  # not read twice
    state = planner._versions[table.id]
    assert state.deferred == bits(sorted(mine & reading))
    while reads:  # its own reads land at once (a fast store: the patience stays 10 s)
        reads += assigned(planner.handle(PieceArrived(reads.pop().piece, STORE), 10.0))
    planner.handle_timer(19.9)
    assert state.deferred
    planner.handle_timer(20.0)  # peer 1 never announced them: this agent's to read now
    assert state.deferred == 0


def test_an_owner_is_not_taken_for_stalled_while_this_agents_store_reads_are_slower() -> None:
    table = table_of(40)
    planner = FetchPlanner(ME, PlannerConfig(store_reads=4, owner_patience=10.0))
    planner.handle(PeerJoined(peer(1)), 0.0)
    planner.handle(PeerBitfield(peer(1), table.id, Bitfield(40)), 0.0)
    reads = assigned(planner.handle(VersionWanted(table), 0.0))  # slow: none lands for 30 s
    assert reads and all(a.source == STORE for a in reads)
    for now in (10.0, 20.0, 30.0):
        planner.handle_timer(now)
        assert peer(1) in planner._versions[table.id].rendezvous  # twice the 30 s reads' age
    # Its reads land at 30 s: the peer, still silent, is stalled at twice a read's time.
    for a in reads:
        planner.handle(PieceArrived(a.piece, STORE), 30.0)
    planner.handle_timer(59.0)
    assert peer(1) in planner._versions[table.id].rendezvous
    planner.handle_timer(61.0)
    assert peer(1) not in planner._versions[table.id].rendezvous


def test_a_peer_request_waits_longer_when_many_members_want_the_piece_of_one_holder() -> None:
    table = table_of(1)
    deadlines: dict[int, float] = {}
    for members in (4, 20):
        planner = FetchPlanner(ME)
        planner.handle(PeerJoined(peer(1), {table.id: Bitfield.full(1)}), 0.0)
        for n in range(2, members):  # they want it too (announced, none has it)
            planner.handle(PeerJoined(peer(n), {table.id: Bitfield(1)}), 0.0)
        (ask,) = assigned(planner.handle(VersionWanted(table), 0.0))
        deadlines[members] = ask.deadline or 0.0
    # 4 MiB at 1 MB/s; with 19 wanting it (this agent too) of one holder running 8 uploads
    # at once, 19/8 rounds of them
    assert abs(deadlines[4] - (1.0 + 4 * MiB / 1e6)) < 1e-9
    assert abs(deadlines[20] - (1.0 + 19 / 8 * 4 * MiB / 1e6)) < 1e-9
