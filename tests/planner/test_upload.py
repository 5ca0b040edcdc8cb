from aetherfs.core.ids import ManifestId
from aetherfs.planner import BandwidthPolicy, PieceRef, UploadConfig, UploadScheduler
from tests.planner.helpers import MiB, digest, peer

V = ManifestId(digest("manifest"))


def piece(i: int) -> PieceRef:
    return PieceRef(V, i)


def test_uploads_are_shared_between_peers_within_the_slots() -> None:
    up = UploadScheduler(UploadConfig(slots=3, per_peer=2))
    for i in range(5):
        assert up.request(peer(1), piece(i), MiB)
    assert up.request(peer(2), piece(0), MiB)
    started = up.serve(0.0)
    # the greedy peer 1 asked first, but peer 2 gets a slot before peer 1's second
    assert [(r.peer, r.piece.index) for r in started] == [
        (peer(1), 0),
        (peer(2), 0),
        (peer(1), 1),
    ]
    assert up.serve(0.0) == []
    up.finished(peer(2), piece(0))
    assert [(r.peer, r.piece.index) for r in up.serve(0.1)] == []  # peer 1 at its 2 already
    up.finished(peer(1), piece(0))
    assert [(r.peer, r.piece.index) for r in up.serve(0.2)] == [(peer(1), 2)]


def test_a_full_queue_or_a_duplicate_is_refused_and_cancelled_requests_are_dropped() -> None:
    up = UploadScheduler(UploadConfig(slots=1, per_peer=1, queue_per_peer=2))
    assert up.request(peer(1), piece(0), 10)
    assert not up.request(peer(1), piece(0), 10)
    assert up.request(peer(1), piece(1), 10)
    assert not up.request(peer(1), piece(2), 10)
    up.cancel(peer(1), piece(0))
    assert [r.piece.index for r in up.serve(0.0)] == [1]
    up.peer_gone(peer(1))
    assert up.request(peer(2), piece(5), 10)
    assert [r.piece.index for r in up.serve(0.0)] == [5]  # the gone peer's slot is free


def test_the_upload_cap_holds_over_time() -> None:
    cap = 4 * MiB  # one 4 MiB piece a second
    up = UploadScheduler(UploadConfig(slots=8), BandwidthPolicy(peer_upload=cap), now=0.0)
    for i in range(16):
        up.request(peer(i % 4), piece(i), 4 * MiB)
    now, sent, starts = 0.0, 0, []
    while len(starts) < 16:
        for request in up.serve(now):
            starts.append(now)
            sent += request.size
            assert sent <= cap + cap * now + 4 * MiB
            up.finished(request.peer, request.piece)
        timer = up.get_timer()
        if timer is None:
            break
        now = timer
    assert len(starts) == 16
    assert 14.0 <= starts[-1] <= 15.0
    assert sum(up.bytes_sent().values()) == 64 * MiB
