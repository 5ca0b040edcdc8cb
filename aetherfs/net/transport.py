"""The trio TCP transport: one task per connection, a thin loop around a PeerConnection.

The loop feeds the bytes it reads to the connection with `trio.current_time()`, sends what
the connection queued, and sleeps until the connection's own timer (`get_timer()`), so the
handshake, idle and progress timeouts are the protocol's, not ours. Reads are at most
`read_size` bytes (1 MiB), into one buffer per link, and each is handed to the connection at
once (which refuses an oversize frame at its prefix and copies what outlives the call), so a
peer can make us hold at most one frame and one read.

What the connection reports is handed to `on_events(link, events)`, synchronously, in order;
the caller (the swarm engine) decides what to do with it.
"""

from __future__ import annotations

import math
import os
import socket as stdlib_socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import trio

from aetherfs.protocol.connection import PeerConnection
from aetherfs.protocol.events import Event
from aetherfs.protocol.messages import Block, Message, Reason

# 1 MiB: most frames then lie whole inside one read and are views of it, not copies; a frame
# cut by a read's end is gathered. A socket link reads into one buffer of this size, its own,
# again and again (its pages become resident only as far as reads fill them). Memory stays
# bounded: that buffer and one frame being gathered per connection.
READ_SIZE = 1024 * 1024
# A socket link asks the kernel not to wake it (SO_RCVLOWAT) before the frame it is gathering
# could be whole, when that is at least this much: on a link slower than the reader, each wake
# otherwise brings a segment or two, and the wake (epoll, a failed read, trio's scheduling,
# the frame gathered in pieces) cost more than the bytes. Below it, waking is cheap enough.
LOWAT_MIN = 16 * 1024
IOV_MAX = 1024  # buffers per gathered write (Linux)
CONNECT_TIMEOUT = 5.0
CLOSE_GRACE = 2.0  # to send a goodbye once the connection is closed, then the socket goes


@dataclass(frozen=True, slots=True, order=True)
class PeerAddress:
    """Where an agent listens: from the config (static peers) or from discovery."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """`host:port` or `[v6 host]:port`."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"{text!r} is not host:port")
        return cls(host.strip("[]"), int(port))


EventHandler = Callable[["PeerLink", list[Event]], None]


class PeerLink:
    """One TCP connection to a peer and the PeerConnection that speaks over it."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        address: PeerAddress,
        on_events: EventHandler,
        read_size: int = READ_SIZE,
    ) -> None:
        self.stream = stream
        self.conn = conn
        self.address = address
        self.initiator = conn.initiator
        self.bytes_sent = 0
        self.bytes_received = 0
        self.reads = 0  # socket reads that brought bytes (each one trip through the loop)
        self.last_seen = trio.current_time()
        self.done = trio.Event()  # set when the socket is closed
        self._on_events = on_events
        self._read_size = read_size
        self._wake = trio.Event()  # the writer's: bytes queued
        self._tick = trio.Event()  # the ticker's: the connection's timer came earlier
        self._ticker_at = math.inf  # the deadline the ticker sleeps until
        self._flushed = trio.Event()
        self._writer_done = trio.Event()
        self._queued = 0  # sends queued, counted
        self._sent = 0  # of those, the count the last send_all carried
        self._writing = 0  # bytes the writer took from the connection, not written yet

    # --- what the engine calls ---------------------------------------------------------

    def send(self, message: Message | Block) -> bool:
        """Queue one message (False: it answers a request the peer cancelled). Sent soon."""
        if self.conn.closed:
            return False
        sent = self.conn.send(message, trio.current_time())
        if sent:
            self.poke()
        return sent

    def poke(self) -> None:
        """The connection queued bytes (a send, proofs, a goodbye): send them, and look at
        its timer again. The ticker is woken only if the timer came earlier than what it
        sleeps until (or ended): sends and reads move timers later, and waking it for each
        block cost more than the block's header seal (a woken ticker that finds its old
        deadline passed calls `handle_timer`, which checks each timer itself)."""
        self._queued += 1
        self._wake.set()
        self._check_timer()

    def _check_timer(self) -> None:
        timer = self.conn.get_timer()
        if timer is None or timer < self._ticker_at:
            self._tick.set()

    def close(self, reason: Reason = Reason.NORMAL, text: str = "") -> None:
        """Say goodbye; the loop sends it and closes the socket."""
        self._deliver(self.conn.close(trio.current_time(), reason, text))
        self.poke()

    async def flushed(self, ahead: int = 0) -> None:
        """Wait until at most `ahead` bytes queued are not written to the socket yet (or it
        closed): an uploader's backpressure, so a slow reader does not make us buffer a
        whole piece, while a few blocks queued let the writer send them in one write."""
        while self.conn.bytes_to_send() + self._writing > ahead and not self.done.is_set():
            await self._flushed.wait()

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run the connection until it closes; the socket is closed on the way out.

        Three tasks: the reader feeds the connection, the writer sends what it queued, and
        the ticker calls `handle_timer` when `get_timer` comes, even while the writer is
        stuck on a peer that does not read. Once the connection is closed the writer has
        `CLOSE_GRACE` to send the goodbye."""
        self.conn.start(trio.current_time())
        self.poke()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, self._reader, nursery.cancel_scope)
                nursery.start_soon(self._guarded, self._writer, nursery.cancel_scope)
                await self._ticker()
                with trio.move_on_after(CLOSE_GRACE):
                    await self._writer_done.wait()
                nursery.cancel_scope.cancel()  # the reader may still wait on a silent socket
        finally:
            self._lost()
            self.done.set()
            self._flushed.set()
            await trio.aclose_forcefully(self.stream)

    async def _guarded(self, loop: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
        """Run one task; if the socket breaks, the connection is lost and the others stop."""
        try:
            await loop()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._lost()
            scope.cancel()

    async def _reader(self) -> None:
        receive = self._receive_into() if isinstance(self.stream, trio.SocketStream) else None
        while not self.conn.closed:
            if receive is None:
                data: bytes | bytearray | memoryview = await self.stream.receive_some(
                    self._read_size
                )
            else:
                data = await receive()
            self.bytes_received += len(data)
            self.reads += 1
            self.last_seen = trio.current_time()
            self._deliver(self.conn.receive_data(data, self.last_seen))
            # Most reads are parts of blocks and answer nothing: the writer is woken only for
            # the connection's own answers (pongs, rejects, a goodbye) or its end, and the
            # ticker only if the timer came earlier (a read moves the idle timer later).
            if self.conn.has_data_to_send or self.conn.closed:
                self.poke()
            else:
                self._check_timer()
            if not data:
                return

    def _receive_into(self) -> Callable[[], Awaitable[memoryview]]:
        """Reads into one buffer of this link, again and again: a fresh `bytes` per read costs
        the kernel a page fault per 4 KiB, more than the copy itself. The connection keeps no
        view of what it is fed (it copies what must outlive the call), so the next read may
        overwrite it.

        Each read first waits until the socket is readable, with the low-water mark set to
        what the frame being gathered still lacks (`bytes_wanted`, when at least LOWAT_MIN):
        one wake and one read per frame rather than per segment. The kernel grows the
        receive buffer to hold the mark (a frame is at most MAX_FRAME_BODY), and the end of
        the stream, an error, memory pressure or a receive window under one segment wake it
        anyway; a read takes whatever is there. (A timeout on each marked wait, in case a
        kernel forgot, cost a quarter of the reader's CPU: the idle timeout is the net.) A
        read that filled the buffer is followed by another at once."""
        sock = cast(trio.SocketStream, self.stream).socket
        fd = sock.fileno()
        buffer = bytearray(self._read_size)
        view = memoryview(buffer)
        lowat = 1  # the kernel's default
        full = False  # the last read filled the buffer: more may be there already

        async def receive() -> memoryview:
            nonlocal lowat, full
            wanted = min(self.conn.bytes_wanted(), self._read_size)
            mark = wanted if wanted >= LOWAT_MIN else 1
            if mark != lowat:
                sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVLOWAT, mark)
                lowat = mark
            while True:
                if full:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.wait_readable(sock)
                try:
                    count = os.readv(fd, [buffer])
                except BlockingIOError:
                    full = False
                    continue
                full = count == len(buffer)
                return view[:count]

        return receive

    async def _writer(self) -> None:
        write = self._write_gathered() if isinstance(self.stream, trio.SocketStream) else None
        try:
            while True:
                target = self._queued
                if write is not None:
                    buffers = self.conn.buffers_to_send()
                    if buffers:
                        await write(buffers)
                else:
                    data = self.conn.data_to_send()
                    if data:
                        await self.stream.send_all(data)
                        self.bytes_sent += len(data)
                self._sent = target
                self._flushed.set()
                self._flushed = trio.Event()
                if self.conn.closed and self._sent == self._queued:
                    return
                if self._sent == self._queued:
                    await self._wake.wait()
                    self._wake = trio.Event()
        finally:
            self._writer_done.set()

    def _write_gathered(self) -> Callable[[list[bytes | memoryview]], Awaitable[None]]:
        """Writes the connection's buffers (frames, a block's own bytes) with gathered writes,
        not joined first, and waits for the socket only when the kernel took less than all:
        `send_all` of one joined buffer copied every block once more and passed through the
        scheduler on every send, even one that did not block."""
        sock = cast(trio.SocketStream, self.stream).socket
        fd = sock.fileno()

        async def write(buffers: list[bytes | memoryview]) -> None:
            views = [memoryview(b) for b in buffers if len(b)]
            self._writing = sum(map(len, views))
            first = 0
            while first < len(views):
                try:
                    count = os.writev(fd, views[first : first + IOV_MAX])
                except BlockingIOError:
                    count = 0
                self.bytes_sent += count
                self._writing -= count
                while first < len(views) and count >= len(views[first]):
                    count -= len(views[first])
                    first += 1
                if first < len(views):
                    if count:
                        views[first] = views[first][count:]
                    self._flushed.set()  # an uploader waiting for room may queue more
                    self._flushed = trio.Event()
                    await trio.lowlevel.wait_writable(sock)

        return write

    async def _ticker(self) -> None:
        while not self.conn.closed:
            timer = self.conn.get_timer()
            self._ticker_at = timer if timer is not None else math.inf
            with trio.move_on_at(self._ticker_at):
                await self._tick.wait()
            self._tick = trio.Event()
            now = trio.current_time()
            if timer is not None and now >= timer:
                self._deliver(self.conn.handle_timer(now))
                self.poke()

    def _lost(self) -> None:
        """The socket broke or the task was cancelled: the connection is lost, if not over."""
        if not self.conn.closed:
            self._deliver(self.conn.receive_data(b"", trio.current_time()))

    def _deliver(self, events: list[Event]) -> None:
        if events:
            self._on_events(self, events)


async def dial(address: PeerAddress, timeout: float = CONNECT_TIMEOUT) -> trio.SocketStream:
    """Open a TCP connection (OSError if refused or late)."""
    with trio.move_on_after(timeout):
        return await trio.open_tcp_stream(address.host, address.port)
    raise OSError(f"connecting to {address} took over {timeout:g} s")


def peer_address(stream: trio.SocketStream) -> PeerAddress:
    host, port = stream.socket.getpeername()[:2]
    return PeerAddress(str(host), int(port))
