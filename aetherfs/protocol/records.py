"""Records cut into RECORD chunks and put back together (protocol/peer.md, "Messages"), with
no I/O: the sender's chunks are made here, and the receiver checks each chunk against the
ones before it. The whole record is still the receiver's to verify (a manifest's id, a tag's
signatures): this only carries the bytes."""

from __future__ import annotations

from collections.abc import Iterator

from aetherfs.protocol.admission import AccessId
from aetherfs.protocol.errors import LocalProtocolError, RemoteProtocolError
from aetherfs.protocol.messages import MAX_RECORD_CHUNK, MAX_RECORD_SIZE, Record, RecordKind


def record_chunks(
    request_id: int,
    kind: RecordKind,
    dataset: AccessId | None,
    ref: bytes,
    data: bytes,
    chunk: int = MAX_RECORD_CHUNK,
) -> Iterator[Record]:
    """The RECORD messages that carry `data` whole, in order (one, empty, for b"")."""
    if len(data) > MAX_RECORD_SIZE:
        raise LocalProtocolError(
            f"a record of {len(data):,} bytes is over the limit of {MAX_RECORD_SIZE:,}"
        )
    if not 0 < chunk <= MAX_RECORD_CHUNK:
        raise LocalProtocolError(f"record chunks are 1..{MAX_RECORD_CHUNK:,} bytes")
    view = memoryview(data)
    offset = 0
    while True:
        piece = bytes(view[offset : offset + chunk])
        yield Record(request_id, kind, dataset, ref, offset, len(data), piece)
        offset += len(piece)
        if offset >= len(data):
            return


class RecordAssembly:
    """One record being received, answering one RECORD_REQUEST: every chunk must continue
    the last (same kind, dataset, ref and total; offset where the last ended), and the total
    must be within `limit`. A chunk that breaks this raises RemoteProtocolError."""

    def __init__(
        self, kind: RecordKind, dataset: AccessId | None, ref: bytes, limit: int = MAX_RECORD_SIZE
    ) -> None:
        self.kind, self.dataset, self.ref = kind, dataset, ref
        self.limit = min(limit, MAX_RECORD_SIZE)
        self.total: int | None = None
        self._parts: list[bytes] = []
        self._received = 0

    @property
    def complete(self) -> bool:
        return self.total is not None and self._received == self.total

    def add(self, record: Record) -> bytes | None:
        """Take the next chunk; the whole record once its last chunk arrived, else None."""
        if (record.kind, record.dataset, record.ref) != (self.kind, self.dataset, self.ref):
            raise RemoteProtocolError("a record chunk names another record than the one asked")
        if record.total > self.limit:
            raise RemoteProtocolError(
                f"the peer offered a record of {record.total:,} bytes, over the limit of "
                f"{self.limit:,}"
            )
        if self.total is None:
            self.total = record.total
        elif record.total != self.total:
            raise RemoteProtocolError("a record's total changed between its chunks")
        if self.complete or record.offset != self._received:
            raise RemoteProtocolError(
                f"a record chunk at offset {record.offset:,}, expected {self._received:,}"
            )
        if record.total and not record.data:
            raise RemoteProtocolError("an empty record chunk in a record that is not empty")
        self._parts.append(record.data)
        self._received += len(record.data)
        if not self.complete:
            return None
        whole = b"".join(self._parts)
        self._parts = [whole]
        return whole
