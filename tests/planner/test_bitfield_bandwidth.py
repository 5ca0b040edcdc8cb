import pytest
from hypothesis import given
from hypothesis import strategies as st

from aetherfs.errors import InvalidInput
from aetherfs.planner import Bitfield, TokenBucket


@given(
    st.integers(0, 300).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, max(n - 1, 0))))
    )
)
def test_bitfields_round_trip_through_the_wire_form(case: tuple[int, set[int]]) -> None:
    count, indices = case
    indices = {i for i in indices if i < count}
    field = Bitfield.of(count, indices)
    wire = field.to_bytes()
    assert len(wire) == (count + 7) // 8
    assert Bitfield.from_bytes(count, wire) == field
    assert set(field) == indices and len(field) == len(indices)


def test_the_wire_puts_piece_zero_in_the_high_bit_and_refuses_spare_bits() -> None:
    assert Bitfield.of(10, [0, 9]).to_bytes() == bytes([0x80, 0x40])
    with pytest.raises(InvalidInput, match="past its last piece"):
        Bitfield.from_bytes(10, bytes([0x00, 0x20]))
    with pytest.raises(InvalidInput, match="2 bytes"):
        Bitfield.from_bytes(10, b"\0")
    with pytest.raises(InvalidInput):
        Bitfield(3, 0b1000)


def test_a_bucket_lets_a_large_transfer_through_then_makes_the_next_wait() -> None:
    bucket = TokenBucket(rate=1000.0, burst=500.0, now=0.0)
    assert bucket.ready(0.0)
    bucket.take(0.0, 4000)  # larger than the burst: goes into debt
    assert not bucket.ready(1.0)
    assert bucket.ready_at(1.0) == pytest.approx(3.5)
    assert bucket.ready(3.5)
    assert TokenBucket(None).ready_at(7.0) == 7.0
    with pytest.raises(InvalidInput):
        TokenBucket(0.0)


def test_a_bucket_never_saves_more_than_its_burst_and_ignores_time_going_back() -> None:
    bucket = TokenBucket(rate=100.0, burst=50.0, now=0.0)
    bucket.take(0.0, 50)
    assert bucket.ready(100.0)
    bucket.take(100.0, 100)  # 50 saved, not 10,000
    assert not bucket.ready(100.4)
    assert not bucket.ready(50.0)  # an earlier `now` refills nothing
    assert bucket.ready(100.5)
