import pytest
from nacl.signing import SigningKey

from aetherfs.core.ids import ManifestId
from aetherfs.core.tags import SignedTag, TagHistory, TagRecord
from aetherfs.errors import Conflict, IntegrityError

KEY = SigningKey(bytes(32))
PUBLIC = bytes(KEY.verify_key)
M1, M2 = ManifestId(b"\1" * 32), ManifestId(b"\2" * 32)


def signed(tag: str, manifest: ManifestId, seq: int, key: SigningKey = KEY) -> SignedTag:
    record = TagRecord("team/geo", tag, manifest, seq, 1.0, bytes(key.verify_key))
    return SignedTag.sign(record, key)


def test_signature_round_trip() -> None:
    s = signed("stable", M1, 1)
    assert SignedTag.verify(s.signed, [PUBLIC]).record == s.record


def test_forged_record_is_refused() -> None:
    s = signed("stable", M1, 1)
    forged = s.signed[:64] + s.signed[64:].replace(M1.digest, M2.digest)
    with pytest.raises(IntegrityError, match="bad signature"):
        SignedTag.verify(forged, [PUBLIC])


def test_untrusted_signer_is_refused() -> None:
    other = SigningKey(b"\7" * 32)
    with pytest.raises(IntegrityError, match="untrusted"):
        SignedTag.verify(signed("stable", M1, 1, other).signed, [PUBLIC])


def test_history_must_grow() -> None:
    history = TagHistory((signed("stable", M1, 1),))
    history = history.advanced(signed("stable", M2, 2))
    assert history.current.record.manifest_id == M2
    assert TagHistory.from_bytes(history.to_bytes(), [PUBLIC]) == history
    with pytest.raises(Conflict):
        history.advanced(signed("stable", M1, 2))


def test_rolled_back_history_is_refused() -> None:
    rolled = TagHistory((signed("stable", M2, 2), signed("stable", M1, 1)))
    with pytest.raises(IntegrityError, match="backwards"):
        TagHistory.from_bytes(rolled.to_bytes(), [PUBLIC])


def test_version_tags_never_move() -> None:
    history = TagHistory((signed("1.0.0", M1, 1),))
    with pytest.raises(Conflict, match="immutable"):
        history.advanced(signed("1.0.0", M2, 2))


def _raw_record(**fields: object) -> bytes:
    import msgpack

    doc: dict[str, object] = {
        "v": 1,
        "dataset": "team/geo",
        "tag": "stable",
        "manifest": M1.digest,
        "seq": 1,
        "time": 1.0,
        "signer": PUBLIC,
    }
    doc.update(fields)
    for key in [k for k, v in doc.items() if v is None]:
        del doc[key]
    return bytes(msgpack.packb(doc, use_bin_type=True))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"tag": None}, "the tag name is missing"),
        ({"dataset": None}, "the dataset name is missing"),
        ({"seq": "one"}, "its sequence number has the wrong type"),
        ({"seq": True}, "its sequence number has the wrong type"),
        ({"seq": 0}, "its sequence number 0 is below 1"),
        ({"manifest": b"short"}, "its manifest id or signer key has the wrong length"),
        ({"time": None}, "the time it was set is missing"),
    ],
)
def test_malformed_records_say_what_is_wrong_in_words(
    fields: dict[str, object], words: str
) -> None:
    with pytest.raises(IntegrityError, match=f"tag record is malformed: {words}") as info:
        TagRecord.from_bytes(_raw_record(**fields))
    assert "'" not in str(info.value)  # no bare key name leaks out


def test_unreadable_bytes_are_named_as_such() -> None:
    with pytest.raises(IntegrityError, match="not readable msgpack"):
        TagRecord.from_bytes(b"\xc1")
    with pytest.raises(IntegrityError, match="too short to hold a signature"):
        SignedTag.verify(b"x" * 10, [PUBLIC])
    with pytest.raises(IntegrityError, match="holds no list of signed records"):
        TagHistory.from_bytes(b"\x80", [PUBLIC])


def test_salvage_keeps_what_verifies_and_bounds_the_seq() -> None:
    from aetherfs.core.tags import salvage

    good = [signed("stable", M1, 1), signed("stable", M2, 2)]
    forged = good[1].signed[:64] + good[1].signed[64:].replace(M2.digest, M1.digest)
    raw = TagHistory(tuple(good)).to_bytes().replace(good[1].signed, forged)
    found = salvage(raw, [PUBLIC], "team/geo", "stable")
    assert [s.record.seq for s in found.good] == [1]
    assert len(found.damaged) == 1 and "bad signature" in found.damaged[0]
    assert found.highest_seq == 2  # two entries: seq 2 at least, though unreadable
    assert salvage(b"junk", [PUBLIC], "team/geo", "stable").good == ()
