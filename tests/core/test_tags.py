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
