from aetherfs.core.ids import ManifestId
from aetherfs.planner.bitfield import iter_bits
from aetherfs.planner.rendezvous import Rendezvous, weights
from tests.planner.helpers import digest, peer

VERSION = ManifestId(digest("manifest"))
PIECES = 1280


def owners(r: Rendezvous) -> list[object]:
    return [r.owner(i) for i in range(PIECES)]


def test_owners_are_the_highest_weight_members_and_balanced() -> None:
    members = [peer(n) for n in range(10)]
    r = Rendezvous(VERSION, PIECES)
    for m in members:
        r.add(m)
    streams = {m: weights(VERSION, m, PIECES) for m in members}
    for i in range(PIECES):
        assert r.owner(i) == max(members, key=lambda m: streams[m][i])
    shares = [r.owned(m).bit_count() for m in members]
    assert sum(shares) == PIECES
    assert min(shares) > PIECES / 10 * 0.7 and max(shares) < PIECES / 10 * 1.3, shares
    for m in members:
        assert all(r.owner(i) == m for i in iter_bits(r.owned(m)))


def test_the_order_members_come_in_does_not_matter() -> None:
    a, b = Rendezvous(VERSION, PIECES), Rendezvous(VERSION, PIECES)
    for n in range(8):
        a.add(peer(n))
    for n in reversed(range(8)):
        b.add(peer(n))
    assert owners(a) == owners(b)


def test_a_member_leaving_or_joining_moves_only_its_own_pieces() -> None:
    r = Rendezvous(VERSION, PIECES)
    for n in range(8):
        r.add(peer(n))
    before = owners(r)
    r.remove(peer(3))
    after = owners(r)
    moved = [i for i in range(PIECES) if before[i] != after[i]]
    assert moved == [i for i in range(PIECES) if before[i] == peer(3)]
    r.add(peer(3))
    assert owners(r) == before  # back as it was: the same weights
    r.add(peer(9))
    joined = owners(r)
    assert all(joined[i] in (before[i], peer(9)) for i in range(PIECES))
    assert PIECES / 9 * 0.7 < r.owned(peer(9)).bit_count() < PIECES / 9 * 1.3


def test_another_version_has_other_owners() -> None:
    other = Rendezvous(ManifestId(digest("other")), PIECES)
    r = Rendezvous(VERSION, PIECES)
    for n in range(4):
        r.add(peer(n))
        other.add(peer(n))
    same = sum(1 for i in range(PIECES) if r.owner(i) == other.owner(i))
    assert same < PIECES / 4 * 1.3
