"""Trusted tag state: for each tag of one store, the newest record a reader has accepted.

This is what TUF calls trusted metadata. A signature proves who wrote a record, not that it is
the newest: a store (or a peer) can hand back an older, validly signed history. A reader that
remembers the highest `seq` it accepted, and a hash of that record, refuses anything older, and
a different record under the same seq (a forked history). Pure: the comparison and the one
encoding; `aetherfs/trust.py` keeps it in a file, and peers will use the same two.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import blake3

from aetherfs.core.ids import ManifestId
from aetherfs.core.tags import TagRecord
from aetherfs.errors import AetherError, IntegrityError

FORMAT = 1


@dataclass(frozen=True, slots=True)
class TrustedTag:
    """The newest record of one tag accepted so far."""

    seq: int
    manifest_id: ManifestId
    record_hash: bytes  # BLAKE3 of the record's bytes: tells two records of one seq apart
    time: float  # when its signer set it

    @classmethod
    def of(cls, record: TagRecord) -> TrustedTag:
        return cls(record.seq, record.manifest_id, record_hash(record), record.time)

    def same_record(self, record: TagRecord) -> bool:
        return self.seq == record.seq and self.record_hash == record_hash(record)


def record_hash(record: TagRecord) -> bytes:
    """The record's bytes are canonical (msgpack of fixed fields), so equal records hash alike."""
    return blake3.blake3(record.to_bytes()).digest()


class TagRollback(IntegrityError):
    """A tag record older than one already trusted, or a second record with a trusted seq."""

    def __init__(self, message: str, trusted: TrustedTag, offered: TagRecord) -> None:
        super().__init__(message)
        self.trusted = trusted
        self.offered = offered


def check_record(trusted: TrustedTag | None, record: TagRecord, remedy: str) -> bool:
    """True if `record` is newer than `trusted` (to be remembered), False if it is the trusted
    one itself; raises TagRollback if it is older or differs under the same seq.

    `remedy` ends the message: what the reader runs if the store was really reset.
    """
    if trusted is None or record.seq > trusted.seq:
        return True
    ref = f"{record.dataset}:{record.tag}"
    if record.seq == trusted.seq:
        if trusted.same_record(record):
            return False
        raise TagRollback(
            f"{ref} offers a different record with seq {record.seq} (manifest "
            f"{record.manifest_id.short()}) than the one trusted here (manifest "
            f"{trusted.manifest_id.short()}): a forked or replayed history; refusing it. "
            f"{remedy}",
            trusted,
            record,
        )
    raise TagRollback(
        f"{ref} is at seq {record.seq} (manifest {record.manifest_id.short()}) but seq "
        f"{trusted.seq} (manifest {trusted.manifest_id.short()}) was already trusted here: a "
        f"replayed or rolled-back tag record; refusing it. {remedy}",
        trusted,
        record,
    )


def tag_key(dataset: str, tag: str) -> str:
    """`team/geo-db:stable`: neither part can hold a ':' (core/names.py)."""
    return f"{dataset}:{tag}"


@dataclass(frozen=True, slots=True)
class TrustState:
    """The trusted tags of one store, by `dataset:tag`."""

    store_id: str
    tags: Mapping[str, TrustedTag] = field(default_factory=dict)

    def get(self, dataset: str, tag: str) -> TrustedTag | None:
        return self.tags.get(tag_key(dataset, tag))

    def with_record(self, record: TagRecord) -> TrustState:
        tags = dict(self.tags)
        tags[tag_key(record.dataset, record.tag)] = TrustedTag.of(record)
        return TrustState(self.store_id, tags)

    def without(self, dataset: str | None) -> TrustState:
        """Forget every tag (`dataset` None) or those of one dataset."""
        prefix = None if dataset is None else tag_key(dataset, "")
        kept = {
            k: v for k, v in self.tags.items() if prefix is not None and not k.startswith(prefix)
        }
        return TrustState(self.store_id, kept)

    def items(self) -> Iterator[tuple[str, TrustedTag]]:
        yield from sorted(self.tags.items())

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "store_id": self.store_id,
            "tags": {
                key: {
                    "seq": t.seq,
                    "manifest": t.manifest_id.hex(),
                    "record": t.record_hash.hex(),
                    "time": t.time,
                }
                for key, t in sorted(self.tags.items())
            },
        }
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, where: str, reset_command: str) -> TrustState:
        """Parse the state; `where` names it in errors (a path), `reset_command` is the way out."""
        try:
            try:
                doc = json.loads(raw)
            except ValueError:
                raise ValueError("it is not JSON") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not a trusted-tag file of a format this version reads")
            tags = {
                str(key): TrustedTag(
                    int(entry["seq"]),
                    ManifestId.from_hex(str(entry["manifest"])),
                    bytes.fromhex(str(entry["record"])),
                    float(entry["time"]),
                )
                for key, entry in dict(doc["tags"]).items()
            }
            return cls(str(doc["store_id"]), tags)
        except (ValueError, KeyError, TypeError, AetherError) as exc:
            what = exc if isinstance(exc, ValueError | AetherError) else "a field is missing"
            raise IntegrityError(
                f"the trusted tag state {where} is damaged ({what}): without it, a rolled-back "
                f"tag cannot be told from a new one. Restore it from a backup, or run "
                f"`{reset_command}` to trust the store's tags as they are now"
            ) from None
