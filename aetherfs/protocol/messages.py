"""The message set: one frozen dataclass per message, its type code, the protocol version that
introduced it, and its wire fields. A message travels as a msgpack array
`[type, flags, field, ...]`; see `protocol/peer.md` for every field and limit.

Compatibility rules: fields are only ever appended (a decoder ignores trailing fields it does
not know, so a newer peer may add optional ones); a new message gets a new type code and the
version that introduced it, and is sent only on connections of that version or later; a sender
marks a message whose loss is harmless with MAY_IGNORE, and a receiver skips unknown types so
marked, while an unknown type without it ends the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar

import msgpack

from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.protocol.admission import BLINDED_SIZE, KEY_SIZE, SIGNATURE_SIZE, AccessId
from aetherfs.protocol.errors import RemoteProtocolError

MAGIC = "AETHERFS"
MAY_IGNORE = 0x01
MAX_TEXT = 200
MAX_AGENT_NAME = 64
MAX_PROOF = 4096
MAX_ACCESS_PROOFS = 256
MAX_PIECES = 1 << 20  # pieces in one version: 4 PiB at 4 MiB a piece
MAX_BLOCKS_PER_REQUEST = 1024
MAX_REF = 256
MAX_RECORD_CHUNK = 256 * 1024
MAX_RECORD_SIZE = 256 * 1024 * 1024
U64 = 2**64 - 1


class MessageType(IntEnum):
    HELLO = 1
    AUTH = 2
    GOODBYE = 3
    PING = 4
    PONG = 5
    ACCESS = 6
    BITFIELD = 7
    HAVE = 8
    REQUEST = 9
    DONE = 10
    REJECT = 11
    CANCEL = 12
    RECORD = 13
    RECORD_REQUEST = 14
    HAVE_RANGE = 15


class Reason(IntEnum):
    """Why a connection ended (goodbye's reason, and ConnectionClosed's)."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    NO_COMMON_VERSION = 2
    NOT_ADMITTED = 3
    HANDSHAKE_TIMEOUT = 4
    IDLE_TIMEOUT = 5
    NO_PROGRESS = 6
    REVOKED = 7
    CONNECTION_LOST = 8
    OTHER = 255


class RejectReason(IntEnum):
    NOT_HAVE = 1
    FORBIDDEN = 2
    BUSY = 3
    TOO_LARGE = 4
    OTHER = 255


class RecordKind(IntEnum):
    TAG_HISTORY = 1  # ref: the tag name; dataset-scoped
    MANIFEST = 2  # ref: the manifest id; dataset-scoped
    REVOCATIONS = 3  # ref: empty; fleet-wide


class DatasetNames(Protocol):
    """How a connection names datasets on the wire: by a per-session blinded id."""

    def blind(self, access_id: AccessId) -> bytes: ...

    def unblind(self, blinded: bytes) -> AccessId: ...


_E = TypeVar("_E", bound=IntEnum)


# Field checks: each returns the value or raises RemoteProtocolError.


def _fail(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"the peer sent a malformed message: {what}")


def _int(value: Any, what: str, low: int = 0, high: int = U64) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _fail(f"{what} is not an integer in [{low}, {high}]")
    return value


def _bytes(value: Any, what: str, size: int | None = None, most: int | None = None) -> bytes:
    if type(value) is not bytes:
        raise _fail(f"{what} is not bytes")
    if size is not None and len(value) != size:
        raise _fail(f"{what} is not {size} bytes")
    if most is not None and len(value) > most:
        raise _fail(f"{what} is over {most} bytes")
    return value


def _text(value: Any, what: str, most: int) -> str:
    if type(value) is not str or len(value) > most:
        raise _fail(f"{what} is not a string of at most {most} characters")
    return value


def _enum(cls: type[_E], value: Any, what: str, fallback: _E | None = None) -> _E:
    number = _int(value, what, 0, 255)
    try:
        return cls(number)
    except ValueError:
        if fallback is None:
            raise _fail(f"{what} {number} is unknown") from None
        return fallback


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame each way, in the clear: the versions spoken and an ephemeral X25519 key."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    min_version: int
    max_version: int
    ephemeral: bytes

    def fields(self, names: DatasetNames) -> list[Any]:
        return [MAGIC, self.min_version, self.max_version, self.ephemeral]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Hello:
        if f[0] != MAGIC:
            raise _fail("not an AetherFS peer (bad magic)")
        low, high = _int(f[1], "min_version", 1, 65535), _int(f[2], "max_version", 1, 65535)
        if low > high:
            raise _fail("min_version above max_version")
        return cls(low, high, _bytes(f[3], "ephemeral key", KEY_SIZE))


@dataclass(frozen=True, slots=True)
class Auth:
    """First sealed frame each way: identity, its signature over the transcript, admission."""

    TYPE: ClassVar[MessageType] = MessageType.AUTH
    identity: bytes
    signature: bytes
    admission: int
    proof: bytes
    agent: str
    revocations_seq: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [
            self.identity,
            self.signature,
            self.admission,
            self.proof,
            self.agent,
            self.revocations_seq,
        ]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Auth:
        return cls(
            _bytes(f[0], "identity", KEY_SIZE),
            _bytes(f[1], "signature", SIGNATURE_SIZE),
            _int(f[2], "admission kind", 0, 255),
            _bytes(f[3], "admission proof", most=MAX_PROOF),
            _text(f[4], "agent name", MAX_AGENT_NAME),
            _int(f[5], "revocations seq"),
        )


@dataclass(frozen=True, slots=True)
class Goodbye:
    TYPE: ClassVar[MessageType] = MessageType.GOODBYE
    reason: Reason
    text: str = ""

    def fields(self, names: DatasetNames) -> list[Any]:
        return [int(self.reason), self.text[:MAX_TEXT]]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Goodbye:
        return cls(_enum(Reason, f[0], "reason", Reason.OTHER), _text(f[1], "text", MAX_TEXT))


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE: ClassVar[MessageType] = MessageType.PING
    nonce: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [self.nonce]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Ping:
        return cls(_int(f[0], "nonce"))


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE: ClassVar[MessageType] = MessageType.PONG
    nonce: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [self.nonce]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Pong:
        return cls(_int(f[0], "nonce"))


class ProofKind(IntEnum):
    SIGNATURE = 1  # signed by the dataset's access key
    GRANT = 2  # reserved: a hub-signed grant for a keyless relay (not in version 1)


@dataclass(frozen=True, slots=True)
class AccessProof:
    blinded: bytes
    kind: int
    proof: bytes


@dataclass(frozen=True, slots=True)
class Access:
    """Proofs that the sender may receive some datasets, each named by its blinded id. Only the
    connection makes and reads these; callers call `PeerConnection.prove_access`."""

    TYPE: ClassVar[MessageType] = MessageType.ACCESS
    proofs: tuple[AccessProof, ...]

    def fields(self, names: DatasetNames) -> list[Any]:
        return [[[p.blinded, p.kind, p.proof] for p in self.proofs]]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Access:
        items = f[0]
        if type(items) is not list or len(items) > MAX_ACCESS_PROOFS:
            raise _fail(f"access proofs are not a list of at most {MAX_ACCESS_PROOFS}")
        proofs = []
        for item in items:
            if type(item) is not list or len(item) < 3:
                raise _fail("an access proof is not [blinded, kind, proof]")
            proofs.append(
                AccessProof(
                    _bytes(item[0], "blinded id", BLINDED_SIZE),
                    _int(item[1], "proof kind", 0, 255),
                    _bytes(item[2], "proof", most=MAX_PROOF),
                )
            )
        return cls(tuple(proofs))


@dataclass(frozen=True, slots=True)
class Bitfield:
    """Which pieces of one version the sender holds: bit i (most significant first) of `bits`
    is piece i of the manifest's piece table."""

    TYPE: ClassVar[MessageType] = MessageType.BITFIELD
    dataset: AccessId
    manifest: ManifestId
    count: int
    bits: bytes

    @classmethod
    def of(
        cls, dataset: AccessId, manifest: ManifestId, count: int, held: Sequence[int]
    ) -> Bitfield:
        bits = bytearray((count + 7) // 8)
        for index in held:
            bits[index >> 3] |= 0x80 >> (index & 7)
        return cls(dataset, manifest, count, bytes(bits))

    def has(self, index: int) -> bool:
        return 0 <= index < self.count and bool(self.bits[index >> 3] & (0x80 >> (index & 7)))

    def held(self) -> list[int]:
        return [i for i in range(self.count) if self.has(i)]

    def fields(self, names: DatasetNames) -> list[Any]:
        return [names.blind(self.dataset), self.manifest.digest, self.count, self.bits]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Bitfield:
        count = _int(f[2], "piece count", 0, MAX_PIECES)
        bits = _bytes(f[3], "bitfield", (count + 7) // 8)
        if count % 8 and bits[-1] & (0xFF >> (count % 8)):
            raise _fail("bits set past the piece count")
        return cls(_dataset(f[0], names), _manifest(f[1]), count, bits)


def _dataset(value: Any, names: DatasetNames) -> AccessId:
    return names.unblind(_bytes(value, "dataset", BLINDED_SIZE))


def _manifest(value: Any) -> ManifestId:
    return ManifestId(_bytes(value, "manifest id", 32))


@dataclass(frozen=True, slots=True)
class Have:
    """The sender now holds one more piece (sent as soon as it is verified)."""

    TYPE: ClassVar[MessageType] = MessageType.HAVE
    dataset: AccessId
    manifest: ManifestId
    piece: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [names.blind(self.dataset), self.manifest.digest, self.piece]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Have:
        return cls(_dataset(f[0], names), _manifest(f[1]), _int(f[2], "piece", 0, MAX_PIECES - 1))


@dataclass(frozen=True, slots=True)
class HaveRange:
    """Version 2: the sender now holds pieces start..end-1 (a run verified at once)."""

    TYPE: ClassVar[MessageType] = MessageType.HAVE_RANGE
    dataset: AccessId
    manifest: ManifestId
    start: int
    end: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [names.blind(self.dataset), self.manifest.digest, self.start, self.end]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> HaveRange:
        start = _int(f[2], "start", 0, MAX_PIECES)
        end = _int(f[3], "end", start, MAX_PIECES)
        return cls(_dataset(f[0], names), _manifest(f[1]), start, end)


@dataclass(frozen=True, slots=True)
class Request:
    """Ask for one piece of a version, or for a list of blocks; answered by Block frames and
    then one Done or Reject with the same request id."""

    TYPE: ClassVar[MessageType] = MessageType.REQUEST
    request_id: int
    dataset: AccessId
    manifest: ManifestId
    piece: int | None = None
    blocks: tuple[BlockId, ...] | None = None

    def fields(self, names: DatasetNames) -> list[Any]:
        blocks = None if self.blocks is None else [b.digest for b in self.blocks]
        return [
            self.request_id,
            names.blind(self.dataset),
            self.manifest.digest,
            self.piece,
            blocks,
        ]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Request:
        piece = None if f[3] is None else _int(f[3], "piece", 0, MAX_PIECES - 1)
        blocks = None
        if f[4] is not None:
            if type(f[4]) is not list or not 0 < len(f[4]) <= MAX_BLOCKS_PER_REQUEST:
                raise _fail(f"blocks is not a list of 1 to {MAX_BLOCKS_PER_REQUEST} ids")
            blocks = tuple(BlockId(_bytes(b, "block id", 32)) for b in f[4])
        if (piece is None) == (blocks is None):
            raise _fail("a request names a piece or blocks, exactly one of them")
        return cls(
            _int(f[0], "request id", 1), _dataset(f[1], names), _manifest(f[2]), piece, blocks
        )


@dataclass(frozen=True, slots=True)
class Done:
    """Every block of a request that the sender will send has been sent."""

    TYPE: ClassVar[MessageType] = MessageType.DONE
    request_id: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [self.request_id]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Done:
        return cls(_int(f[0], "request id", 1))


@dataclass(frozen=True, slots=True)
class Reject:
    TYPE: ClassVar[MessageType] = MessageType.REJECT
    request_id: int
    reason: RejectReason

    def fields(self, names: DatasetNames) -> list[Any]:
        return [self.request_id, int(self.reason)]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Reject:
        return cls(
            _int(f[0], "request id", 1), _enum(RejectReason, f[1], "reason", RejectReason.OTHER)
        )


@dataclass(frozen=True, slots=True)
class Cancel:
    TYPE: ClassVar[MessageType] = MessageType.CANCEL
    request_id: int

    def fields(self, names: DatasetNames) -> list[Any]:
        return [self.request_id]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Cancel:
        return cls(_int(f[0], "request id", 1))


@dataclass(frozen=True, slots=True)
class Record:
    """A chunk of a signed record (tag history, sealed manifest, revocation list): pushed
    (request_id 0) or answering a RecordRequest. The receiver verifies the whole record."""

    TYPE: ClassVar[MessageType] = MessageType.RECORD
    request_id: int
    kind: RecordKind
    dataset: AccessId | None
    ref: bytes
    offset: int
    total: int
    data: bytes

    def fields(self, names: DatasetNames) -> list[Any]:
        dataset = None if self.dataset is None else names.blind(self.dataset)
        return [
            self.request_id,
            int(self.kind),
            dataset,
            self.ref,
            self.offset,
            self.total,
            self.data,
        ]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> Record:
        kind = _enum(RecordKind, f[1], "record kind")
        dataset = None if f[2] is None else _dataset(f[2], names)
        if (dataset is None) != (kind is RecordKind.REVOCATIONS):
            raise _fail("a record names a dataset exactly when it is dataset-scoped")
        total = _int(f[5], "total", 0, MAX_RECORD_SIZE)
        offset = _int(f[4], "offset", 0, total)
        data = _bytes(f[6], "data", most=min(MAX_RECORD_CHUNK, total - offset))
        return cls(
            _int(f[0], "request id"),
            kind,
            dataset,
            _bytes(f[3], "ref", most=MAX_REF),
            offset,
            total,
            data,
        )


@dataclass(frozen=True, slots=True)
class RecordRequest:
    TYPE: ClassVar[MessageType] = MessageType.RECORD_REQUEST
    request_id: int
    kind: RecordKind
    dataset: AccessId | None
    ref: bytes

    def fields(self, names: DatasetNames) -> list[Any]:
        dataset = None if self.dataset is None else names.blind(self.dataset)
        return [self.request_id, int(self.kind), dataset, self.ref]

    @classmethod
    def parse(cls, f: Sequence[Any], names: DatasetNames) -> RecordRequest:
        kind = _enum(RecordKind, f[1], "record kind")
        dataset = None if f[2] is None else _dataset(f[2], names)
        if (dataset is None) != (kind is RecordKind.REVOCATIONS):
            raise _fail("a record request names a dataset exactly when it is dataset-scoped")
        return cls(_int(f[0], "request id", 1), kind, dataset, _bytes(f[3], "ref", most=MAX_REF))


@dataclass(frozen=True, slots=True)
class Block:
    """One sealed block answering a request. Sent as its own frame kind (BLOCK or
    SEALED_BLOCK), not as a msgpack message, so its bytes are never copied into msgpack."""

    request_id: int
    block_id: BlockId
    data: bytes | memoryview


Message: TypeAlias = (
    Hello
    | Auth
    | Goodbye
    | Ping
    | Pong
    | Access
    | Bitfield
    | Have
    | HaveRange
    | Request
    | Done
    | Reject
    | Cancel
    | Record
    | RecordRequest
)


@dataclass(frozen=True, slots=True)
class MessageSpec:
    parse: Callable[[Sequence[Any], DatasetNames], Message]
    since: int  # the protocol version that introduced it
    arity: int  # fields a decoder needs; more are ignored


def _spec(cls: Any, since: int, arity: int) -> tuple[MessageType, MessageSpec]:
    return cls.TYPE, MessageSpec(cls.parse, since, arity)


SPECS: dict[MessageType, MessageSpec] = dict(
    [
        _spec(Hello, 1, 4),
        _spec(Auth, 1, 6),
        _spec(Goodbye, 1, 2),
        _spec(Ping, 1, 1),
        _spec(Pong, 1, 1),
        _spec(Access, 1, 1),
        _spec(Bitfield, 1, 4),
        _spec(Have, 1, 3),
        _spec(HaveRange, 2, 4),
        _spec(Request, 1, 5),
        _spec(Done, 1, 1),
        _spec(Reject, 1, 2),
        _spec(Cancel, 1, 1),
        _spec(Record, 1, 7),
        _spec(RecordRequest, 1, 4),
    ]
)
BY_CLASS: dict[type[Any], MessageType] = {
    cls: cls.TYPE
    for cls in (
        Hello,
        Auth,
        Goodbye,
        Ping,
        Pong,
        Access,
        Bitfield,
        Have,
        HaveRange,
        Request,
        Done,
        Reject,
        Cancel,
        Record,
        RecordRequest,
    )
}


def encode_message(message: Message, names: DatasetNames, flags: int = 0) -> bytes:
    return msgpack.packb([int(message.TYPE), flags, *message.fields(names)], use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message of a type this build does not know (or not at this version), marked
    MAY_IGNORE: skipped."""

    type: int


def decode_message(body: bytes, version: int, names: DatasetNames) -> Message | Unknown:
    """Decode one message body; raise RemoteProtocolError on anything malformed."""
    try:
        doc = msgpack.unpackb(
            body, raw=False, use_list=True, strict_map_key=True, max_array_len=4096
        )
    except Exception:
        raise _fail("not msgpack") from None
    if type(doc) is not list or len(doc) < 2:
        raise _fail("not [type, flags, ...]")
    code, flags = _int(doc[0], "type", 0, 65535), _int(doc[1], "flags", 0, 255)
    try:
        spec = SPECS[MessageType(code)]
    except (ValueError, KeyError):
        spec = None
    if spec is None or spec.since > version:
        if flags & MAY_IGNORE:
            return Unknown(code)
        raise RemoteProtocolError(
            f"the peer sent message type {code}, unknown at version {version}: upgrade this agent"
        )
    fields = doc[2:]
    if len(fields) < spec.arity:
        raise _fail(f"message type {code} has {len(fields)} fields, needs {spec.arity}")
    return spec.parse(fields, names)


def encode_block_header(block: Block) -> bytes:
    return msgpack.packb([block.request_id, block.block_id.digest, len(block.data)])


def decode_block_header(header: bytes) -> tuple[int, BlockId, int]:
    try:
        doc = msgpack.unpackb(header, raw=False, max_array_len=16)
    except Exception:
        raise _fail("a block header is not msgpack") from None
    if type(doc) is not list or len(doc) < 3:
        raise _fail("a block header is not [request id, block id, length]")
    return (
        _int(doc[0], "request id", 1),
        BlockId(_bytes(doc[1], "block id", 32)),
        _int(doc[2], "block length", 0, 1 << 24),
    )
