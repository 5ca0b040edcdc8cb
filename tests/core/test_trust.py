"""The trusted tag state: the comparison (pure) and its one encoding."""

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from aetherfs.core.ids import ManifestId
from aetherfs.core.tags import TagRecord
from aetherfs.core.trust import TagRollback, TrustedTag, TrustState, check_record
from aetherfs.errors import IntegrityError
from aetherfs.trust import TrustStore

PUBLIC = bytes(SigningKey(bytes(32)).verify_key)
M1, M2 = ManifestId(b"\1" * 32), ManifestId(b"\2" * 32)
REMEDY = "run the reset"


def record(seq: int, manifest: ManifestId = M1, time: float = 1.0) -> TagRecord:
    return TagRecord("team/geo", "stable", manifest, seq, time, PUBLIC)


def test_first_and_newer_records_are_accepted() -> None:
    assert check_record(None, record(1), REMEDY)
    assert check_record(TrustedTag.of(record(1)), record(2, M2), REMEDY)


def test_the_trusted_record_itself_is_accepted_without_change() -> None:
    assert not check_record(TrustedTag.of(record(2)), record(2), REMEDY)


def test_an_older_record_is_refused_naming_both_seqs_and_the_way_out() -> None:
    with pytest.raises(TagRollback, match=r"at seq 1 .* but seq 2 .* run the reset") as info:
        check_record(TrustedTag.of(record(2, M2)), record(1), REMEDY)
    assert isinstance(info.value, IntegrityError)
    assert info.value.trusted.seq == 2 and info.value.offered.seq == 1


def test_a_second_record_under_a_trusted_seq_is_refused() -> None:
    with pytest.raises(TagRollback, match="different record with seq 2"):
        check_record(TrustedTag.of(record(2, M2)), record(2, M1), REMEDY)
    with pytest.raises(TagRollback, match="different record"):  # same manifest, other time
        check_record(TrustedTag.of(record(2, M2)), record(2, M2, time=5.0), REMEDY)


def test_state_round_trips_and_forgets_by_dataset() -> None:
    other = TagRecord("team/roads", "latest", M2, 7, 2.0, PUBLIC)
    state = TrustState("store-1").with_record(record(3)).with_record(other)
    again = TrustState.from_bytes(state.to_bytes(), "f", REMEDY)
    assert again == state
    assert again.get("team/geo", "stable") == TrustedTag.of(record(3))
    assert again.without("team/geo").get("team/geo", "stable") is None
    assert again.without("team/geo").get("team/roads", "latest") is not None
    assert again.without("team/ge").get("team/geo", "stable") is not None  # whole names only
    assert again.without(None).tags == {}


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"format": 9}', b'{"format": 1, "tags": {}}'])
def test_damaged_state_says_what_to_do(raw: bytes) -> None:
    with pytest.raises(IntegrityError, match=r"is damaged .* run `run the reset`"):
        TrustState.from_bytes(raw, "/x/s.json", REMEDY)


def test_a_record_we_wrote_is_remembered_unless_a_newer_one_is_trusted(tmp_path: Path) -> None:
    """`aetherfs tag` racing another writer: its own record may be older than one a process
    here trusted meanwhile; that is no rollback, and nothing newer is forgotten."""
    store = TrustStore(tmp_path / "trust")
    store.remember("s", record(1))
    assert store.load("s").get("team/geo", "stable").seq == 1  # type: ignore[union-attr]
    store.accept("s", record(3, M2))
    store.remember("s", record(2))  # ours, landed before the other writer's seq 3
    assert store.load("s").get("team/geo", "stable").seq == 3  # type: ignore[union-attr]
    with pytest.raises(TagRollback):
        store.remember("s", record(3, M1))  # a different record under the trusted seq: a fork
    with pytest.raises(TagRollback):
        store.accept("s", record(2))  # a reader still refuses the older record
