"""A counting HTTP/1.1 reverse proxy on 127.0.0.1, in front of an S3 server.

Every tool (AetherFS through boto3, rclone, s5cmd) talks to the proxy, which forwards bytes
unchanged (the Host header too, so signatures stay valid) and counts requests by S3 billing
class and the body bytes each way. Counting on the wire treats all tools the same: nothing is
taken from a tool's own report.

Request kinds: GET, HEAD, PUT, COPY (PUT with x-amz-copy-source), POST (multipart upload
start and completion), LIST (listing objects, uploads or parts), DELETE.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BufferedReader
from typing import cast
from urllib.parse import parse_qs, urlsplit

_BUFFER = 1024 * 1024
_MAX_HEAD = 64 * 1024

Counting = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Traffic:
    """Requests by kind and body bytes: `up` sent to the server, `down` received from it."""

    requests: dict[str, int] = field(default_factory=dict)
    up: int = 0
    down: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __sub__(self, other: Traffic) -> Traffic:
        kinds = set(self.requests) | set(other.requests)
        diff = {k: self.requests.get(k, 0) - other.requests.get(k, 0) for k in kinds}
        return Traffic(
            {k: v for k, v in diff.items() if v}, self.up - other.up, self.down - other.down
        )


class _Closed(Exception):
    pass


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The S3 request kind, for pricing (path-style addressing: /bucket/key)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    key = parts.path.lstrip("/").partition("/")[2]
    if method == "PUT":
        return "COPY" if "x-amz-copy-source" in headers else "PUT"
    if method == "GET":
        if "uploadId" in query or "uploads" in query:
            return "LIST"
        if not key and not ({"location", "versioning", "acl", "policy"} & set(query)):
            return "LIST"
        return "GET"
    return method


def _read_head(reader: BufferedReader) -> list[bytes]:
    lines: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(_MAX_HEAD)
        if not line:
            if lines:
                raise _Closed("connection closed in the middle of a message head")
            raise _Closed("connection closed")
        size += len(line)
        if size > _MAX_HEAD:
            raise _Closed("message head too large")
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue  # tolerate stray blank lines between messages
            return lines
        lines.append(line)


def _headers(lines: list[bytes]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        found[name.strip().lower()] = value.strip()
    return found


def _ignore(size: int) -> None:
    pass


def _copy_exact(
    reader: BufferedReader, sock: socket.socket, length: int, count: Counting = _ignore
) -> int:
    left = length
    while left > 0:
        piece = reader.read(min(_BUFFER, left))
        if not piece:
            raise _Closed("connection closed in the middle of a body")
        count(len(piece))  # before sending: the peer may act on the bytes at once
        sock.sendall(piece)
        left -= len(piece)
    return length


def _copy_chunked(reader: BufferedReader, sock: socket.socket, count: Counting = _ignore) -> int:
    """Forward a chunked body as it is; return its payload size."""
    payload = 0
    while True:
        size_line = reader.readline(_MAX_HEAD)
        if not size_line:
            raise _Closed("connection closed in a chunked body")
        sock.sendall(size_line)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the blank line
                trailer = reader.readline(_MAX_HEAD)
                sock.sendall(trailer)
                if trailer in (b"\r\n", b"\n", b""):
                    return payload
        payload += _copy_exact(reader, sock, size, count)
        sock.sendall(reader.readline(_MAX_HEAD))  # CRLF after the chunk


def _copy_to_close(reader: BufferedReader, sock: socket.socket, count: Counting) -> int:
    total = 0
    while piece := reader.read1(_BUFFER):
        count(len(piece))
        sock.sendall(piece)
        total += len(piece)
    return total


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = cast(BufferedReader, client.makefile("rb", buffering=_BUFFER))
        upstream: socket.socket | None = None
        up_reader: BufferedReader | None = None
        try:
            while True:
                try:
                    head = _read_head(reader)
                except _Closed:
                    return
                request_line = head[0].decode("latin-1").split()
                method, target = request_line[0], request_line[1]
                headers = _headers(head)
                if headers.get("expect", "").lower() == "100-continue":
                    # Answer the client ourselves and send the server the body at once.
                    head = [h for h in head if not h.lower().startswith(b"expect:")]
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if upstream is None:
                    upstream = socket.create_connection(self.server.upstream)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    up_reader = cast(BufferedReader, upstream.makefile("rb", buffering=_BUFFER))
                assert up_reader is not None
                upstream.sendall(b"".join(head) + b"\r\n")
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    sent = _copy_chunked(reader, upstream)
                else:
                    sent = _copy_exact(reader, upstream, int(headers.get("content-length", "0")))
                response = _read_head(up_reader)
                status = int(response[0].split()[1])
                while 100 <= status < 200:
                    client.sendall(b"".join(response) + b"\r\n")
                    response = _read_head(up_reader)
                    status = int(response[0].split()[1])
                # Counted before the client sees the response, so a snapshot taken once
                # the client has its answer always includes this request.
                self.server.record(classify(method, target, headers), sent, 0)
                client.sendall(b"".join(response) + b"\r\n")
                rheaders = _headers(response)
                close = "close" in (
                    headers.get("connection", "").lower() + rheaders.get("connection", "").lower()
                )
                count = self.server.add_down
                if method == "HEAD" or status in (204, 304):
                    pass
                elif "chunked" in rheaders.get("transfer-encoding", "").lower():
                    _copy_chunked(up_reader, client, count)
                elif "content-length" in rheaders:
                    _copy_exact(up_reader, client, int(rheaders["content-length"]), count)
                else:
                    _copy_to_close(up_reader, client, count)
                    close = True
                if close:
                    return
        except (_Closed, OSError):
            return
        finally:
            if upstream is not None:
                upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.up = 0
        self.down = 0

    def record(self, kind: str, up: int, down: int) -> None:
        with self.lock:
            self.requests[kind] += 1
            self.up += up
            self.down += down

    def add_down(self, size: int) -> None:
        with self.lock:
            self.down += size


class CountingProxy:
    """Start with `with CountingProxy("http://127.0.0.1:8333") as proxy:`; use proxy.endpoint."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the proxy forwards to http://HOST:PORT, not {upstream}")
        self._server = _Server((parts.hostname, parts.port))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def snapshot(self) -> Traffic:
        with self._server.lock:
            return Traffic(dict(self._server.requests), self._server.up, self._server.down)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
