"""Which of the pieces a peer can give to ask it for first: a pluggable choice.

The planner hands a selector the candidates (needed, idle, held by that peer, not failed from
it) as a bitset, the version's pieces grouped by how many peers hold them, and this agent's
own order of the pieces; the selector names one. Kraken has the same seam (its default and
rarest-first policies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aetherfs.planner.bitfield import iter_bits


class PieceSelector(Protocol):
    def select(self, wanted: int, by_rarity: Sequence[int], order: Sequence[int]) -> int:
        """One index of `wanted` (never 0). `by_rarity[k]`: the pieces k peers hold.
        `order[i]`: this agent's own rank of piece i, to break ties."""
        ...


class RarestFirst:
    """The piece fewest peers hold, so every piece spreads and none is left on one peer that
    may leave; among equals, this agent's own order, so agents do not all ask for one piece."""

    def select(self, wanted: int, by_rarity: Sequence[int], order: Sequence[int]) -> int:
        for bucket in by_rarity:
            rarest = wanted & bucket
            if rarest:
                return min(iter_bits(rarest), key=lambda i: (order[i], i))
        raise ValueError("a wanted piece that no rarity bucket holds")


class InOrder:
    """The lowest index: pieces in pack order, for a reader that wants the start first."""

    def select(self, wanted: int, by_rarity: Sequence[int], order: Sequence[int]) -> int:
        return (wanted & -wanted).bit_length() - 1
