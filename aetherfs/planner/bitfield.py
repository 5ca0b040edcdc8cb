"""Which pieces of a version someone holds: a bit per piece, as a Python int in memory.

An int is a compact bitset whose and/or/not run in C over 64 bits at a time, so the planner
can ask "what does this peer have that I still need" of a 1,280-piece version in one step.
On the wire a bitfield is bytes, piece 0 in the high bit of byte 0 (BitTorrent's order).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aetherfs.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Bitfield:
    """`count` pieces; bit i of `bits` set when piece i is held."""

    count: int
    bits: int = 0

    def __post_init__(self) -> None:
        if self.count < 0 or self.bits < 0 or self.bits >> self.count:
            raise InvalidInput(f"a bitfield of {self.count} pieces names a piece past its end")

    @classmethod
    def full(cls, count: int) -> Bitfield:
        return cls(count, (1 << count) - 1)

    @classmethod
    def of(cls, count: int, indices: Iterable[int]) -> Bitfield:
        bits = 0
        for index in indices:
            bits |= 1 << index
        return cls(count, bits)

    @classmethod
    def from_bytes(cls, count: int, data: bytes) -> Bitfield:
        """The wire form: ceil(count / 8) bytes, spare bits of the last byte zero."""
        if len(data) != (count + 7) // 8:
            raise InvalidInput(f"a bitfield of {count} pieces is {(count + 7) // 8} bytes")
        spare = len(data) * 8 - count
        value = int.from_bytes(data, "big")
        if value & ((1 << spare) - 1):
            raise InvalidInput("a bitfield sets bits past its last piece")
        return cls(count, _reverse(value >> spare, count))

    def to_bytes(self) -> bytes:
        size = (self.count + 7) // 8
        return (_reverse(self.bits, self.count) << (size * 8 - self.count)).to_bytes(size, "big")

    def __contains__(self, index: int) -> bool:
        return bool(self.bits >> index & 1)

    def __len__(self) -> int:
        """Pieces held."""
        return self.bits.bit_count()

    def __iter__(self) -> Iterator[int]:
        return iter_bits(self.bits)


def iter_bits(bits: int) -> Iterator[int]:
    """Indices of the set bits, lowest first."""
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


def _reverse(value: int, width: int) -> int:
    """Bit i becomes bit width-1-i: the wire puts piece 0 first, the int puts it lowest."""
    if width == 0:
        return 0
    text = format(value, f"0{width}b")
    return int(text[::-1], 2)
