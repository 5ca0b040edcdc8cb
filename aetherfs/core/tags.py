"""Signed tag records: `{dataset, tag, manifest_id, seq, time, signer}` under Ed25519.

`seq` only grows, so an agent that remembers the last seq it accepted refuses a replayed or
rolled-back record, even when the record was relayed by a peer rather than the registry.
The stored object for one tag holds its whole history, newest last.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from aetherfs.core.ids import DIGEST_SIZE, ManifestId
from aetherfs.core.names import is_version_tag
from aetherfs.errors import Conflict, IntegrityError

T = TypeVar("T")

FORMAT_VERSION = 1
SIGNATURE_SIZE = 64  # Ed25519
SIGNER_SIZE = 32  # an Ed25519 public key


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
        doc = _unpack(raw, "tag record")
        if not isinstance(doc, dict):
            raise IntegrityError("tag record is malformed: it is not a map of fields")
        version = _field(doc, "v", int, "its format version")
        if version != FORMAT_VERSION:
            raise IntegrityError(f"tag record format {version!r} is not supported")
        manifest = _field(doc, "manifest", bytes, "the manifest id")
        signer = _field(doc, "signer", bytes, "the signer's key")
        if len(manifest) != DIGEST_SIZE or len(signer) != SIGNER_SIZE:
            raise IntegrityError(
                "tag record is malformed: its manifest id or signer key has the wrong length"
            )
        seq = _field(doc, "seq", int, "its sequence number")
        if seq < 1:
            raise IntegrityError(f"tag record is malformed: its sequence number {seq} is below 1")
        time: float = _field(doc, "time", (int, float), "the time it was set")
        return cls(
            dataset=_field(doc, "dataset", str, "the dataset name"),
            tag=_field(doc, "tag", str, "the tag name"),
            manifest_id=ManifestId(manifest),
            seq=seq,
            time=float(time),
            signer=signer,
        )


def _unpack(raw: bytes, what: str) -> object:
    try:
        return msgpack.unpackb(raw, raw=False)
    except Exception:  # msgpack raises several unrelated types for bad input
        raise IntegrityError(f"{what} is malformed: it is not readable msgpack") from None


def _field(doc: dict[object, object], key: str, kind: type[T] | tuple[type, ...], what: str) -> T:
    """`doc[key]` if it has the expected type; an error that says which field, in words."""
    if key not in doc:
        raise IntegrityError(f"tag record is malformed: {what} is missing")
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise IntegrityError(f"tag record is malformed: {what} has the wrong type")
    return value  # type: ignore[return-value]


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
        if len(signed) <= SIGNATURE_SIZE:
            raise IntegrityError("tag record is malformed: too short to hold a signature")
        record = TagRecord.from_bytes(signed[SIGNATURE_SIZE:])
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
        records = tuple(SignedTag.verify(item, trusted) for item in history_entries(raw))
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


def history_entries(raw: bytes) -> list[bytes]:
    """The signed records a stored history holds, unverified, oldest first."""
    doc = _unpack(raw, "tag history")
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, bytes) for r in records):
        raise IntegrityError("tag history is malformed: it holds no list of signed records")
    return records


@dataclass(frozen=True, slots=True)
class Salvage:
    """What can still be trusted in a damaged history: the basis of a repair."""

    good: tuple[SignedTag, ...]  # verified, seq strictly growing, oldest first
    damaged: tuple[str, ...]  # why each entry left out was refused
    entries: int  # entries the history held (0 if it could not be read at all)

    @property
    def highest_seq(self) -> int:
        """A seq at least as high as any the history may have held.

        Every writer sets seq to the previous one plus one, starting at 1, so a history of
        N entries reached seq N at least, even where the entries are unreadable.
        """
        return max([self.entries, *(r.record.seq for r in self.good)])


def salvage(raw: bytes, trusted: Iterable[bytes], dataset: str, tag: str) -> Salvage:
    """Keep every entry of a stored history that verifies and keeps seq growing."""
    trusted = tuple(trusted)
    try:
        entries = history_entries(raw)
    except IntegrityError as exc:
        return Salvage((), (str(exc),), 0)
    good: list[SignedTag] = []
    damaged: list[str] = []
    for index, entry in enumerate(entries):
        try:
            signed = SignedTag.verify(entry, trusted)
        except IntegrityError as exc:
            damaged.append(f"entry {index + 1}: {exc}")
            continue
        record = signed.record
        if (record.dataset, record.tag) != (dataset, tag):
            damaged.append(f"entry {index + 1}: it names {record.dataset}:{record.tag}")
        elif good and record.seq <= good[-1].record.seq:
            damaged.append(f"entry {index + 1}: seq {record.seq} after {good[-1].record.seq}")
        else:
            good.append(signed)
    return Salvage(tuple(good), tuple(damaged), len(entries))


@dataclass(frozen=True, slots=True)
class TagScan:
    """A dataset's tags as read: the histories that verify, and why each other one did not."""

    histories: dict[str, TagHistory]
    damaged: dict[str, str]
