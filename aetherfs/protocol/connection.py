"""PeerConnection: the peer protocol as a state machine that takes bytes and `now` and returns
events, bytes to send and its next deadline. It never reads a clock or touches a socket; the
trio transport (and the simulator) is a loop around it:

    conn = PeerConnection(config, initiator=True, datasets=[...])
    conn.start(now)
    send conn.data_to_send(); then, forever:
        events = conn.receive_data(chunk, now)   # b"" at end of stream
        events = conn.handle_timer(now)          # when get_timer() passes
        conn.send(message, now)
        send conn.data_to_send()
    until a ConnectionClosed event: send what is left, close the socket.

Which message may arrive or be sent in which state is data (the tables below, rendered in
`protocol/peer.md`), not code paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import blake3
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from aetherfs.core.fleet_certs import MAX_REVOCATIONS_SIZE, AgentCertificate, RevocationList
from aetherfs.core.ids import BlockId
from aetherfs.errors import AetherError, IntegrityError
from aetherfs.protocol import handshake
from aetherfs.protocol.admission import (
    AccessId,
    Admission,
    AdmissionKind,
    DatasetAccess,
    FleetCertificate,
    FleetSecret,
    NotAdmitted,
    open_revocations,
)
from aetherfs.protocol.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    StreamTruncated,
)
from aetherfs.protocol.events import (
    AccessProved,
    ConnectionClosed,
    Established,
    Event,
    PeerInfo,
    RevocationsRefused,
    RevocationsUpdated,
)
from aetherfs.protocol.frames import MAX_BLOCK_SIZE, Frame, FrameBuffer, FrameCipher, FrameKind
from aetherfs.protocol.frames import plain_frame as _plain_frame
from aetherfs.protocol.messages import (
    Access,
    AccessProof,
    Auth,
    Bitfield,
    Block,
    Cancel,
    Done,
    Goodbye,
    Have,
    HaveRange,
    Hello,
    Message,
    MessageType,
    Ping,
    Pong,
    ProofKind,
    Reason,
    Record,
    RecordKind,
    RecordRequest,
    Reject,
    RejectReason,
    Request,
    Unknown,
    decode_block_header,
    decode_message,
    encode_block_header,
    encode_message,
)

MAX_OPEN_REQUESTS = 64  # per direction; a peer opening more breaks the protocol
MAX_UNMATCHED_PROOFS = 1024
# Older revocation lists taken from one peer without ending the connection: lists cross on
# the wire now and then, a peer sending old ones again and again is not racing.
MAX_REFUSED_LISTS = 8


class State(Enum):
    START = "start"  # made, start() not called yet
    HELLO_SENT = "hello sent"  # our Hello is out; waiting for the peer's
    AUTH_SENT = "auth sent"  # keys derived, our Auth is out; waiting for the peer's
    OPEN = "open"  # both admitted: data messages
    CLOSED = "closed"


_DATA = frozenset(
    {
        MessageType.PING,
        MessageType.PONG,
        MessageType.ACCESS,
        MessageType.BITFIELD,
        MessageType.HAVE,
        MessageType.HAVE_RANGE,
        MessageType.REQUEST,
        MessageType.DONE,
        MessageType.REJECT,
        MessageType.CANCEL,
        MessageType.RECORD,
        MessageType.RECORD_REQUEST,
    }
)
# Which frame kinds each state accepts (any other ends the connection).
FRAME_KINDS: dict[State, frozenset[FrameKind]] = {
    State.HELLO_SENT: frozenset({FrameKind.PLAIN}),
    State.AUTH_SENT: frozenset({FrameKind.SEALED}),
    State.OPEN: frozenset({FrameKind.SEALED, FrameKind.BLOCK, FrameKind.SEALED_BLOCK}),
}
# Received message (in a state) -> the next state. Anything missing ends the connection.
RECEIVE: dict[tuple[State, MessageType], State] = {
    (State.HELLO_SENT, MessageType.HELLO): State.AUTH_SENT,
    (State.AUTH_SENT, MessageType.AUTH): State.OPEN,
    (State.AUTH_SENT, MessageType.GOODBYE): State.CLOSED,
    (State.OPEN, MessageType.GOODBYE): State.CLOSED,
    **{(State.OPEN, t): State.OPEN for t in _DATA},
}
# What a caller may send() in each state.
SEND: dict[State, frozenset[MessageType]] = {
    State.OPEN: _DATA - {MessageType.ACCESS},
}


@dataclass(frozen=True, slots=True, eq=False)
class PeerConfig:
    """One agent's side of every connection. Times are in seconds of the caller's clock."""

    identity: SigningKey = field(repr=False)
    admission: Admission
    agent: str = ""
    versions: tuple[int, int] = (handshake.MIN_VERSION, handshake.MAX_VERSION)
    handshake_timeout: float = 10.0
    idle_timeout: float = 10.0  # nothing received for this long: the peer is gone
    keepalive_interval: float = 3.0  # nothing sent for this long: send a Ping
    progress_timeout: float = 10.0  # requests open and nothing answering them for this long
    seal_blocks: bool = False  # send blocks as SEALED_BLOCK (see benchmarks/results/peer_codec.md)
    # `now + wall_offset` is the Unix time that certificates are dated in: the caller's clock
    # (trio's, a simulator's) need not be the wall clock, and the connection reads neither.
    wall_offset: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.versions
        if not (handshake.MIN_VERSION <= low <= high <= handshake.MAX_VERSION):
            raise LocalProtocolError(
                f"versions {self.versions} are outside what this build speaks "
                f"({handshake.MIN_VERSION} to {handshake.MAX_VERSION})"
            )
        if self.keepalive_interval >= self.idle_timeout:
            raise LocalProtocolError("the keepalive interval must be shorter than idle timeout")


class _Names:
    """Blinded dataset names for one session (see DatasetNames)."""

    def __init__(self) -> None:
        self.session_id = b""
        self.known: dict[bytes, AccessId] = {}

    def blind(self, access_id: AccessId) -> bytes:
        return access_id.blinded(self.session_id)

    def unblind(self, blinded: bytes) -> AccessId:
        try:
            return self.known[blinded]
        except KeyError:
            raise RemoteProtocolError("the peer named a dataset we do not know") from None


class PeerConnection:
    def __init__(
        self,
        config: PeerConfig,
        initiator: bool,
        datasets: Iterable[DatasetAccess | AccessId] = (),
        ephemeral: PrivateKey | None = None,
    ) -> None:
        """`initiator`: this side opened the TCP connection. `datasets`: those we know (with
        the access key where we hold it). `ephemeral`: a fixed X25519 key, for deterministic
        simulations only; by default a fresh one."""
        self.config = config
        self.initiator = initiator
        self.state = State.START
        self.version = 0
        self.peer: PeerInfo | None = None
        self.ignored = 0  # unknown MAY_IGNORE messages skipped
        self._role = handshake.INITIATOR if initiator else handshake.RESPONDER
        self._peer_role = handshake.RESPONDER if initiator else handshake.INITIATOR
        self._ephemeral = ephemeral or PrivateKey.generate()
        self._pings = 0
        self._buffer = FrameBuffer()
        self._out: list[bytes | memoryview] = []
        self._events: list[Event] = []
        self._hello = b""
        self._transcript = b""
        self._send_cipher: FrameCipher | None = None
        self._receive_cipher: FrameCipher | None = None
        self._names = _Names()
        self._provable: dict[AccessId, DatasetAccess] = {}
        self._datasets: set[AccessId] = set()
        self._peer_may_receive: set[AccessId] = set()
        self._unmatched: dict[bytes, AccessProof] = {}
        # Requests we sent, still open: id -> the blocks asked for (None: a piece or a record).
        self._outgoing: dict[int, frozenset[BlockId] | None] = {}
        self._next_request = 1
        self._incoming: set[int] = set()
        self._revocations: RevocationList | None = None
        self._revocations_signed: bytes | None = None
        self._peer_revocations_seq = 0
        self._refused_lists = 0
        self._started = 0.0
        self._last_received = 0.0
        self._last_sent = 0.0
        self._last_progress = 0.0
        admission = config.admission
        if isinstance(admission, FleetCertificate) and admission.revocations is not None:
            self._revocations = open_revocations(admission.revocations, admission)
            self._revocations_signed = admission.revocations
        for dataset in datasets:
            self.add_dataset(dataset)

    # --- the entry points -------------------------------------------------------------

    def start(self, now: float) -> None:
        """Send our Hello; the handshake timer starts now."""
        if self.state is not State.START:
            raise LocalProtocolError("start() is called once, first")
        low, high = self.config.versions
        hello = Hello(low, high, bytes(self._ephemeral.public_key))
        self._hello = encode_message(hello, self._names)
        self._out.append(_plain_frame(self._hello))
        self._started = self._last_received = self._last_sent = now
        self.state = State.HELLO_SENT

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Feed bytes received (b"" at end of stream); returns what happened. Nothing of
        `data` is kept once this returns (what must outlive it is copied), so the caller may
        read into the same buffer again."""
        if self.state is State.CLOSED:
            return []
        if self.state is State.START:
            raise LocalProtocolError("call start() before receive_data()")
        self._last_received = now
        try:
            if not data:
                if self._buffer.pending():
                    raise StreamTruncated("the stream ended inside a frame: truncated")
                self._closed(Reason.CONNECTION_LOST, "the peer closed the stream", True)
            else:
                self._buffer.feed(data)
                while not self.closed:
                    frame = self._buffer.next_frame()
                    if frame is None:
                        break
                    self._receive_frame(frame, now)
        except RemoteProtocolError as exc:
            self._fail(Reason.PROTOCOL_ERROR, exc)
        except NotAdmitted as exc:
            self._fail(Reason.NOT_ADMITTED, exc)
        return self._drain()

    def send(self, message: Message | Block, now: float) -> bool:
        """Queue one message. False if it answers a request that is no longer open (the peer
        cancelled it): nothing is sent, and that is not an error."""
        if isinstance(message, Block):
            return self._send_block(message, now)
        allowed = SEND.get(self.state, frozenset())
        if message.TYPE not in allowed:
            raise LocalProtocolError(f"cannot send {message.TYPE.name} in state {self.state.value}")
        if message.TYPE is MessageType.HAVE_RANGE and self.version < 2:
            raise LocalProtocolError(
                f"HaveRange needs version 2, this connection is {self.version}"
            )
        match message:
            case Bitfield() | Have() | HaveRange():
                self._check_may_receive(message.dataset)
            case Record() if message.dataset is not None:
                self._check_may_receive(message.dataset)
            case Request() | RecordRequest():
                self._open_request(message, now)
            case Done() | Reject():
                if message.request_id not in self._incoming:
                    return False
                self._incoming.discard(message.request_id)
            case Cancel():
                if self._outgoing.pop(message.request_id, ...) is ...:
                    return False
        self._send_sealed(encode_message(message, self._names), now)
        return True

    def new_request_id(self) -> int:
        """The id for the next Request or RecordRequest (ids only grow)."""
        return self._next_request

    def prove_access(self, datasets: Iterable[DatasetAccess], now: float) -> None:
        """Prove to the peer that we may receive these datasets (named blinded)."""
        if self.state is not State.OPEN:
            raise LocalProtocolError("prove access once the connection is open")
        proofs = []
        for access in datasets:
            self.add_dataset(access)
            proofs.append(
                AccessProof(
                    self._names.blind(access.access_id),
                    ProofKind.SIGNATURE,
                    access.prove(self._role, self._transcript),
                )
            )
        if proofs:
            self._send_sealed(encode_message(Access(tuple(proofs)), self._names), now)

    def add_dataset(self, dataset: DatasetAccess | AccessId) -> list[Event]:
        """Know one more dataset (a relay knows only the access id): the peer's proofs for it,
        earlier or later, are checked."""
        access_id = dataset.access_id if isinstance(dataset, DatasetAccess) else dataset
        if isinstance(dataset, DatasetAccess):
            self._provable[access_id] = dataset
        self._datasets.add(access_id)
        if self._names.session_id:
            blinded = self._names.blind(access_id)
            self._names.known[blinded] = access_id
            proof = self._unmatched.pop(blinded, None)
            if proof is not None:
                self._check_proof(access_id, proof)
        return self._drain()

    def update_revocations(self, signed: bytes, now: float) -> list[Event]:
        """A newer revocation list learnt elsewhere: drop this peer if it is revoked, and pass
        the list on if the peer holds an older one."""
        admission = self.config.admission
        if not isinstance(admission, FleetCertificate):
            raise LocalProtocolError("revocation lists belong to certificate admission")
        self._adopt_revocations(signed, open_revocations(signed, admission), now)
        return self._drain()

    def close(self, now: float, reason: Reason = Reason.NORMAL, text: str = "") -> list[Event]:
        """Say goodbye and close; reports ConnectionClosed."""
        if self.state is not State.CLOSED:
            self._goodbye(reason, text, now)
            self._closed(reason, text, False)
        return self._drain()

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def buffers_to_send(self) -> list[bytes | memoryview]:
        """What data_to_send() would return, as the buffers that make it up, in order and not
        joined: a transport that writes them with one gathered write copies no block."""
        out, self._out = self._out, []
        return out

    @property
    def has_data_to_send(self) -> bool:
        """Whether data_to_send() would return bytes: a transport wakes its writer only then."""
        return bool(self._out)

    def bytes_to_send(self) -> int:
        """How many bytes data_to_send() would return (a transport's backpressure)."""
        return sum(map(len, self._out))

    def bytes_wanted(self) -> int:
        """Bytes still to come before the frame being received is whole (0: not known). The
        state machine is the same whether the caller reads them in one chunk or many; a
        transport may wait for this much before it reads (SO_RCVLOWAT), to wake once per
        frame rather than once per segment."""
        return self._buffer.missing()

    def get_timer(self) -> float | None:
        """When handle_timer() must next be called, or None."""
        if self.state in (State.HELLO_SENT, State.AUTH_SENT):
            return self._started + self.config.handshake_timeout
        if self.state is not State.OPEN:
            return None
        deadlines = [
            self._last_received + self.config.idle_timeout,
            self._last_sent + self.config.keepalive_interval,
        ]
        if self._outgoing:
            deadlines.append(self._last_progress + self.config.progress_timeout)
        return min(deadlines)

    def handle_timer(self, now: float) -> list[Event]:
        config = self.config
        if self.state in (State.HELLO_SENT, State.AUTH_SENT):
            if now >= self._started + config.handshake_timeout:
                self._timeout(Reason.HANDSHAKE_TIMEOUT, "the handshake did not finish", now)
        elif self.state is State.OPEN:
            if now >= self._last_received + config.idle_timeout:
                self._timeout(Reason.IDLE_TIMEOUT, "nothing received from the peer", now)
            elif self._outgoing and now >= self._last_progress + config.progress_timeout:
                self._timeout(Reason.NO_PROGRESS, "the peer holds requests without answering", now)
            elif now >= self._last_sent + config.keepalive_interval:
                self._pings += 1
                self._send_sealed(encode_message(Ping(self._pings), self._names), now)
        return self._drain()

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def open_requests(self) -> int:
        return len(self._outgoing)

    @property
    def session_id(self) -> bytes:
        return self._names.session_id

    # --- receiving ------------------------------------------------------------------

    def _receive_frame(self, frame: Frame, now: float) -> None:
        if frame.kind not in FRAME_KINDS.get(self.state, frozenset()):
            raise RemoteProtocolError(
                f"the peer sent a {frame.kind.name} frame in state {self.state.value}"
            )
        if frame.kind in (FrameKind.BLOCK, FrameKind.SEALED_BLOCK):
            assert self._receive_cipher is not None
            header, payload = self._receive_cipher.open_block(frame)
            self._receive_block(header, payload, now)
            return
        if frame.kind is FrameKind.PLAIN:
            body = bytes(frame.body)
        else:
            assert self._receive_cipher is not None
            body = self._receive_cipher.open(frame.body, frame.prefix)
        message = decode_message(body, self.version or handshake.MAX_VERSION, self._names)
        if isinstance(message, Unknown):
            self.ignored += 1
            return
        next_state = RECEIVE.get((self.state, message.TYPE))
        if next_state is None:
            raise RemoteProtocolError(
                f"the peer sent {message.TYPE.name} in state {self.state.value}"
            )
        if isinstance(message, Hello):
            self._receive_hello(message, body, now)
        elif isinstance(message, Auth):
            self._receive_auth(message, now)
        elif isinstance(message, Goodbye):
            self._closed(message.reason, message.text, True)
        else:
            self._receive_data_message(message, now)
        if self.state is not State.CLOSED:
            self.state = next_state

    def _receive_hello(self, hello: Hello, body: bytes, now: float) -> None:
        version = handshake.negotiate(self.config.versions, (hello.min_version, hello.max_version))
        if version is None:
            low, high = self.config.versions
            self._closed(
                Reason.NO_COMMON_VERSION,
                f"the peer speaks protocol versions {hello.min_version}-{hello.max_version}, "
                f"this agent {low}-{high}: upgrade the older one",
                False,
            )
            return
        self.version = version
        first, second = (self._hello, body) if self.initiator else (body, self._hello)
        self._transcript = handshake.transcript_hash(first, second)
        keys = handshake.session_keys(
            self._ephemeral, hello.ephemeral, self._transcript, self.initiator
        )
        self._send_cipher = FrameCipher(keys.send)
        self._receive_cipher = FrameCipher(keys.receive)
        self._names.session_id = keys.session_id
        for access_id in self._datasets:
            self._names.known[self._names.blind(access_id)] = access_id
        self._send_sealed(encode_message(self._auth(), self._names), now)

    def _auth(self) -> Auth:
        identity = bytes(self.config.identity.verify_key)
        signature = self.config.identity.sign(
            handshake.identity_message(self._role, self._transcript)
        ).signature
        admission = self.config.admission
        if isinstance(admission, FleetSecret):
            kind = AdmissionKind.FLEET_SECRET
            proof = admission.proof(self._role, self._transcript, identity)
        else:
            kind, proof = AdmissionKind.CERTIFICATE, admission.certificate
        seq = self._revocations.seq if self._revocations else 0
        return Auth(identity, signature, kind, proof, self.config.agent, seq)

    def _receive_auth(self, auth: Auth, now: float) -> None:
        try:
            VerifyKey(auth.identity).verify(
                handshake.identity_message(self._peer_role, self._transcript), auth.signature
            )
        except Exception:
            raise RemoteProtocolError("the peer's identity signature does not verify") from None
        admission = self.config.admission
        certificate: AgentCertificate | None = None
        if isinstance(admission, FleetSecret):
            if auth.admission != AdmissionKind.FLEET_SECRET:
                raise NotAdmitted("the peer offers a certificate; this fleet admits by secret")
            admission.check(auth.proof, self._peer_role, self._transcript, auth.identity)
        else:
            if auth.admission != AdmissionKind.CERTIFICATE:
                raise NotAdmitted("the peer offers no certificate; this fleet needs one")
            wall = now + self.config.wall_offset  # certificates are dated in Unix time
            certificate = admission.check(auth.proof, auth.identity, wall, self._revocations)
        self._peer_revocations_seq = auth.revocations_seq
        agent = certificate.agent if certificate else auth.agent
        self.peer = PeerInfo(auth.identity, agent, self.version, admission.fleet_id, certificate)
        self._last_progress = now
        self._events.append(Established(self.peer))
        if self._revocations and auth.revocations_seq < self._revocations.seq:
            self._send_revocations(now)

    def _receive_data_message(self, message: Message, now: float) -> None:
        match message:
            case Ping():
                self._send_sealed(encode_message(Pong(message.nonce), self._names), now)
            case Pong():
                pass
            case Access():
                for proof in message.proofs:
                    self._receive_proof(proof)
            case Request() | RecordRequest():
                self._receive_request(message, now)
            case Done() | Reject():
                if self._answer(message.request_id, now) is not None:
                    self._outgoing.pop(message.request_id)
                    self._events.append(message)
            case Cancel():
                if message.request_id in self._incoming:
                    self._incoming.discard(message.request_id)
                    self._events.append(message)
            case Record():
                if message.request_id and self._answer(message.request_id, now) is None:
                    return
                if message.kind is RecordKind.REVOCATIONS:
                    self._receive_revocations(message, now)
                else:
                    self._events.append(message)
            case Bitfield() | Have() | HaveRange():
                self._events.append(message)

    def _answer(self, request_id: int, now: float) -> int | None:
        """Check an answer names a request we sent; None if it is one we gave up."""
        if request_id >= self._next_request:
            raise RemoteProtocolError(f"the peer answered request {request_id}, never sent")
        if request_id not in self._outgoing:
            return None
        self._last_progress = now
        return request_id

    def _receive_request(self, message: Request | RecordRequest, now: float) -> None:
        request_id = message.request_id
        if request_id in self._incoming:
            raise RemoteProtocolError(f"the peer reused open request id {request_id}")
        if len(self._incoming) >= MAX_OPEN_REQUESTS:
            raise RemoteProtocolError(f"the peer opened more than {MAX_OPEN_REQUESTS} requests")
        self._incoming.add(request_id)
        if message.dataset is not None and message.dataset not in self._peer_may_receive:
            self.send(Reject(request_id, RejectReason.FORBIDDEN), now)
            return
        if isinstance(message, RecordRequest) and message.kind is RecordKind.REVOCATIONS:
            if self._revocations_signed is None:
                self.send(Reject(request_id, RejectReason.NOT_HAVE), now)
            else:
                self._send_revocations(now, request_id)
                self.send(Done(request_id), now)
            return
        self._events.append(message)

    def _receive_block(self, header: bytes, payload: memoryview, now: float) -> None:
        request_id, block_id, length = decode_block_header(header)
        if length != len(payload) or length > MAX_BLOCK_SIZE:
            raise RemoteProtocolError("a block's length is not what its header says")
        if self._answer(request_id, now) is None:
            return
        asked = self._outgoing[request_id]
        if asked is not None and block_id not in asked:
            raise RemoteProtocolError(f"the peer sent block {block_id.short()}, not asked for")
        # The payload of a BLOCK frame is authenticated only through its id: check it here
        # (on the view: BLAKE3 releases the GIL, and a corrupt block is never copied), and so
        # report a block the caller may open without hashing it again. The one copy is the
        # block the caller keeps: `payload` views a buffer the transport reuses.
        if blake3.blake3(payload).digest() != block_id.digest:
            raise RemoteProtocolError(f"the peer sent block {block_id.short()} corrupt")
        self._events.append(Block(request_id, block_id, bytes(payload)))

    def _receive_proof(self, proof: AccessProof) -> None:
        access_id = self._names.known.get(proof.blinded)
        if access_id is None:
            # A dataset we do not know (yet): keep the proof in case we learn it.
            if len(self._unmatched) < MAX_UNMATCHED_PROOFS:
                self._unmatched[proof.blinded] = proof
            return
        self._check_proof(access_id, proof)

    def _check_proof(self, access_id: AccessId, proof: AccessProof) -> None:
        if proof.kind != ProofKind.SIGNATURE:
            return  # grants (for keyless relays) are not in this version: ignored
        if not access_id.check(proof.proof, self._peer_role, self._transcript):
            raise RemoteProtocolError(f"the peer's proof for dataset {access_id.short()} is false")
        if access_id not in self._peer_may_receive:
            self._peer_may_receive.add(access_id)
            self._events.append(AccessProved(access_id))

    def _receive_revocations(self, record: Record, now: float) -> None:
        """A list the peer passed: taken if newer; an older one is refused and the connection
        kept (lists cross on the wire); a bad one is refused and ends the connection."""
        admission = self.config.admission
        if not isinstance(admission, FleetCertificate):
            return  # a fleet admitted by secret has no revocation lists: nothing to check
        held_seq = self._revocations.seq if self._revocations else 0
        try:
            if record.offset != 0 or len(record.data) != record.total:
                raise IntegrityError(
                    f"a revocation list must travel whole in one record; this one is "
                    f"{record.total:,} bytes (at most {MAX_REVOCATIONS_SIZE:,})"
                )
            offered = open_revocations(record.data, admission)
        except AetherError as exc:
            self._events.append(RevocationsRefused(None, held_seq, str(exc)))
            raise RemoteProtocolError(
                f"the peer sent a revocation list that fails: {exc}"
            ) from None
        self._peer_revocations_seq = max(self._peer_revocations_seq, offered.seq)
        if offered.newer(self._revocations):
            self._adopt_revocations(record.data, offered, now)
        elif record.data != self._revocations_signed:  # the very list held: nothing to say
            why = f"its seq {offered.seq} is not newer than the list held (seq {held_seq})"
            self._events.append(RevocationsRefused(offered.seq, held_seq, why))
            self._refused_lists += 1
            if self._refused_lists > MAX_REFUSED_LISTS:
                raise RemoteProtocolError(
                    f"the peer passed {self._refused_lists} revocation lists older than ours"
                )

    def _adopt_revocations(self, signed: bytes, held: RevocationList, now: float) -> None:
        if not held.newer(self._revocations):
            return
        self._revocations, self._revocations_signed = held, signed
        self._events.append(RevocationsUpdated(signed, held.seq))
        if self.state is State.CLOSED or self.peer is None:
            return
        certificate = self.peer.certificate
        if certificate is not None and certificate.serial in held.serials:
            self._timeout(Reason.REVOKED, f"agent {certificate.agent} was revoked", now)
        elif self._peer_revocations_seq < held.seq:
            self._send_revocations(now)

    # --- sending ------------------------------------------------------------------

    def _send_sealed(self, body: bytes, now: float) -> None:
        assert self._send_cipher is not None
        self._out.append(self._send_cipher.sealed_frame(body))
        self._last_sent = now

    def _send_revocations(self, now: float, request_id: int = 0) -> None:
        signed = self._revocations_signed
        assert signed is not None and self._revocations is not None
        record = Record(request_id, RecordKind.REVOCATIONS, None, b"", 0, len(signed), signed)
        self._send_sealed(encode_message(record, self._names), now)
        self._peer_revocations_seq = self._revocations.seq

    def _send_block(self, block: Block, now: float) -> bool:
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot send a block in state {self.state.value}")
        if len(block.data) > MAX_BLOCK_SIZE:
            raise LocalProtocolError(
                f"block {block.block_id.short()} is {len(block.data)} bytes, over the peer "
                f"limit {MAX_BLOCK_SIZE}: serve it from the store"
            )
        if block.request_id not in self._incoming:
            return False
        assert self._send_cipher is not None
        self._out += self._send_cipher.block_frame_parts(
            encode_block_header(block), block.data, self.config.seal_blocks
        )
        self._last_sent = now
        return True

    def _open_request(self, message: Request | RecordRequest, now: float) -> None:
        if message.request_id != self._next_request:
            raise LocalProtocolError(
                f"request id {message.request_id}: take it from new_request_id()"
            )
        if len(self._outgoing) >= MAX_OPEN_REQUESTS:
            raise LocalProtocolError(f"at most {MAX_OPEN_REQUESTS} requests open per peer")
        if not self._outgoing:
            self._last_progress = now
        blocks = message.blocks if isinstance(message, Request) else None
        self._outgoing[message.request_id] = None if blocks is None else frozenset(blocks)
        self._next_request += 1

    def _check_may_receive(self, dataset: AccessId) -> None:
        if dataset not in self._peer_may_receive:
            raise LocalProtocolError(
                f"the peer has not proved it may receive dataset {dataset.short()}"
            )

    # --- closing ------------------------------------------------------------------

    def _goodbye(self, reason: Reason, text: str, now: float) -> None:
        if self._send_cipher is not None:
            self._send_sealed(encode_message(Goodbye(reason, text), self._names), now)

    def _timeout(self, reason: Reason, text: str, now: float) -> None:
        self._goodbye(reason, text, now)
        self._closed(reason, text, False)

    def _fail(self, reason: Reason, error: ProtocolError | NotAdmitted) -> None:
        if self.state is State.CLOSED:
            return
        self._goodbye(reason, str(error), self._last_received)
        self._closed(reason, str(error), False, error)

    def _closed(
        self, reason: Reason, text: str, by_peer: bool, error: AetherError | None = None
    ) -> None:
        self.state = State.CLOSED
        self._buffer = FrameBuffer()  # no view of the caller's buffer outlives the connection
        self._outgoing.clear()
        self._incoming.clear()
        self._events.append(ConnectionClosed(reason, text, by_peer, error))

    def _drain(self) -> list[Event]:
        events, self._events = self._events, []
        return events
