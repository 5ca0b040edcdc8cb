"""Who reads each piece from the store: rendezvous (highest-random-weight) hashing.

Each member's weight for piece i is 8 bytes of a BLAKE3 stream keyed by the version and the
member, so one hash call gives a member's weights for every piece. The member of highest
weight owns the piece; every agent that sees the same members computes the same owners, with
no messages. When a member joins it takes only the pieces where it now weighs most (about
1/n); when one leaves, only its own pieces move. `Rendezvous` keeps, per piece, its owner and
the owner's weight, and per member the set of pieces it owns as a bitset.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

import blake3

from aetherfs.core.ids import ManifestId
from aetherfs.planner.bitfield import iter_bits
from aetherfs.planner.ids import PeerId

_CONTEXT = b"aetherfs rendezvous v1\0"
_START = b"aetherfs store start\0"


def weights(version: ManifestId, member: PeerId, count: int) -> array[int]:
    """`member`'s weight for each of the version's `count` pieces."""
    stream = blake3.blake3(_CONTEXT + version.digest + member.raw).digest(length=8 * count)
    values = array("Q")
    values.frombytes(stream)
    return values


class Rendezvous:
    """The owners of a version's pieces among its current members."""

    __slots__ = ("_owned", "_owner", "_weight", "count", "version")

    def __init__(self, version: ManifestId, count: int) -> None:
        self.version = version
        self.count = count
        self._owner: list[PeerId | None] = [None] * count
        self._weight = array("Q", bytes(8 * count))
        self._owned: dict[PeerId, int] = {}

    @property
    def members(self) -> frozenset[PeerId]:
        return frozenset(self._owned)

    def __contains__(self, member: PeerId) -> bool:
        return member in self._owned

    def owner(self, index: int) -> PeerId | None:
        return self._owner[index]

    def owned(self, member: PeerId) -> int:
        """The pieces `member` owns, as a bitset (0 if it is no member)."""
        return self._owned.get(member, 0)

    def owned_items(self) -> list[tuple[PeerId, int]]:
        return list(self._owned.items())

    def add(self, member: PeerId) -> None:
        if member in self._owned:
            return
        mine = weights(self.version, member, self.count)
        taken = 0
        lost: dict[PeerId, int] = {}
        owner, weight = self._owner, self._weight
        for index in range(self.count):
            previous = owner[index]
            if previous is None or _beats(mine[index], member, weight[index], previous):
                if previous is not None:
                    lost[previous] = lost.get(previous, 0) | 1 << index
                owner[index] = member
                weight[index] = mine[index]
                taken |= 1 << index
        for previous, bits in lost.items():
            self._owned[previous] &= ~bits
        self._owned[member] = taken

    def remove(self, member: PeerId) -> None:
        bits = self._owned.pop(member, None)
        if bits is None:
            return
        for index, (best, best_weight) in self._best_of(sorted(self._owned), bits).items():
            self._owner[index] = best
            self._weight[index] = best_weight
            if best is not None:
                self._owned[best] |= 1 << index

    def owners_among(self, members: Iterable[PeerId], bits: int) -> dict[int, PeerId]:
        """Who would own each piece of `bits` if `members` were all the members (as an agent
        that knows only those sees it); empty when `members` is."""
        best = self._best_of(sorted(members), bits)
        return {index: owner for index, (owner, _) in best.items() if owner is not None}

    def _best_of(self, members: list[PeerId], bits: int) -> dict[int, tuple[PeerId | None, int]]:
        streams = [weights(self.version, other, self.count) for other in members]
        found: dict[int, tuple[PeerId | None, int]] = {}
        for index in iter_bits(bits):
            best: PeerId | None = None
            best_weight = 0
            for other, stream in zip(members, streams, strict=True):
                if best is None or _beats(stream[index], other, best_weight, best):
                    best, best_weight = other, stream[index]
            found[index] = (best, best_weight)
        return found


def _beats(weight: int, member: PeerId, other_weight: int, other: PeerId) -> bool:
    """Higher weight wins; equal weights (1 in 2^64) go to the smaller id, so all agree."""
    return weight > other_weight or (weight == other_weight and member < other)


def store_start(member: PeerId, version: ManifestId, count: int) -> int:
    """The piece `member`'s store reads of `version` start from (then on in pack order, and
    round): hashed, so every agent can tell where another's reads are."""
    if not count:
        return 0
    digest = blake3.blake3(_START + member.raw + version.digest).digest()
    return int.from_bytes(digest[:8], "little") % count


def in_read_order(bits: int, start: int) -> Iterator[int]:
    """The indices of `bits` from `start` up, then from 0 up to `start`."""
    yield from iter_bits(bits >> start << start)
    yield from iter_bits(bits & ((1 << start) - 1))
