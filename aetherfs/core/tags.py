"""Signed tag records: `{dataset, tag, manifest_id, seq, time, signer}` under Ed25519.

`seq` only grows, so an agent that remembers the last seq it accepted refuses a replayed or
rolled-back record, even when the record was relayed by a peer rather than the registry.
The stored object for one tag holds its whole history, newest last.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from aetherfs.core.ids import ManifestId
from aetherfs.core.names import is_version_tag
from aetherfs.errors import Conflict, IntegrityError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TagRecord:
    dataset: str
    tag: str
    manifest_id: ManifestId
    seq: int
    time: float
    signer: bytes  # Ed25519 public key

    def to_bytes(self) -> bytes:
        return msgpack.packb(
            {
                "v": FORMAT_VERSION,
                "dataset": self.dataset,
                "tag": self.tag,
                "manifest": self.manifest_id.digest,
                "seq": self.seq,
                "time": self.time,
                "signer": self.signer,
            },
            use_bin_type=True,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> TagRecord:
        try:
            doc = msgpack.unpackb(raw, raw=False)
            if doc["v"] != FORMAT_VERSION:
                raise IntegrityError(f"tag record format {doc['v']!r} is not supported")
            return cls(
                dataset=str(doc["dataset"]),
                tag=str(doc["tag"]),
                manifest_id=ManifestId(bytes(doc["manifest"])),
                seq=int(doc["seq"]),
                time=float(doc["time"]),
                signer=bytes(doc["signer"]),
            )
        except IntegrityError:
            raise
        except Exception as exc:
            raise IntegrityError(f"tag record is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class SignedTag:
    record: TagRecord
    signed: bytes  # Ed25519 signature || record bytes

    @classmethod
    def sign(cls, record: TagRecord, key: SigningKey) -> SignedTag:
        if record.signer != bytes(key.verify_key):
            raise ValueError("record.signer must be the signing key's public key")
        return cls(record, bytes(key.sign(record.to_bytes())))

    @classmethod
    def verify(cls, signed: bytes, trusted: Iterable[bytes]) -> SignedTag:
        """Check the signature against one of the `trusted` public keys."""
        record = TagRecord.from_bytes(signed[64:])
        if record.signer not in set(trusted):
            raise IntegrityError(
                f"tag {record.dataset}:{record.tag} is signed by an untrusted key "
                f"{record.signer.hex()[:16]}"
            )
        try:
            VerifyKey(record.signer).verify(signed)
        except BadSignatureError:
            raise IntegrityError(
                f"tag {record.dataset}:{record.tag} has a bad signature: altered or forged"
            ) from None
        return cls(record, signed)


@dataclass(frozen=True, slots=True)
class TagHistory:
    """Every record a tag has had, oldest first; the last one is current."""

    records: tuple[SignedTag, ...]

    @property
    def current(self) -> SignedTag:
        return self.records[-1]

    def to_bytes(self) -> bytes:
        return msgpack.packb(
            {"v": FORMAT_VERSION, "records": [r.signed for r in self.records]}, use_bin_type=True
        )

    @classmethod
    def from_bytes(cls, raw: bytes, trusted: Iterable[bytes]) -> TagHistory:
        trusted = tuple(trusted)
        try:
            doc = msgpack.unpackb(raw, raw=False)
            signed = [bytes(item) for item in doc["records"]]
        except Exception as exc:
            raise IntegrityError(f"tag history is malformed: {exc}") from None
        records = tuple(SignedTag.verify(item, trusted) for item in signed)
        if not records:
            raise IntegrityError("tag history is empty")
        for older, newer in itertools.pairwise(records):
            if newer.record.seq <= older.record.seq:
                raise IntegrityError(
                    f"tag {newer.record.dataset}:{newer.record.tag} history goes backwards "
                    f"(seq {older.record.seq} then {newer.record.seq}): rolled back or replayed"
                )
        return cls(records)

    def advanced(self, record: SignedTag) -> TagHistory:
        """This history with `record` appended, enforcing the tag rules."""
        last = self.current.record
        if record.record.seq <= last.seq:
            raise Conflict(f"tag seq must grow: {record.record.seq} after {last.seq}")
        if is_version_tag(last.tag) and record.record.manifest_id != last.manifest_id:
            raise Conflict(
                f"{last.dataset}:{last.tag} is a version tag and already names manifest "
                f"{last.manifest_id.short()}; version tags are immutable. Publish a new "
                "version tag, or use a channel (latest, stable, ...) for names that move."
            )
        return TagHistory((*self.records, record))
