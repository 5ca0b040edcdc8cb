"""Serve the files of one version over HTTP: GET/HEAD, Range, ETag, directory listings.

Anything that can look up a path, list a directory and read a byte range implements `Tree`
(a version on the hub read from the store, or a version an agent has materialised), and
`serve_path` turns a request for a path in it into a response:

- `Range: bytes=a-b` (one range) -> 206 with Content-Range; past the end -> 416; a range
  header that does not parse is ignored (the whole file, 200), as RFC 9110 allows;
- strong ETags from the content (equal files in two versions share one), `If-None-Match`
  -> 304, `If-Range` honoured;
- directories: HTML for browsers, JSON when the client asks for `application/json`.

Path tricks are refused before any lookup: encoded slashes or backslashes, NUL, `.` or `..`
segments, empty segments.
"""

from __future__ import annotations

import html
import mimetypes
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from aetherfs.errors import InvalidInput, NotFound, echo

FILE = "file"
DIRECTORY = "directory"
SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class Node:
    path: str  # "" for the root; no leading or trailing '/'
    kind: str  # FILE, DIRECTORY or SYMLINK
    size: int = 0
    mode: int = 0o644
    etag: str = ""  # strong validator for files, without quotes
    target: str = ""  # a symlink's target, relative to its directory


class Tree(Protocol):
    """A read-only tree of files. Blocking: callers run it in a worker thread.

    A tree whose `lookup` and `children` never block may say so with a class attribute
    `blocking_lookups = False`; they are then called straight from the event loop.
    """

    def lookup(self, path: str) -> Node | None: ...

    def children(self, path: str) -> list[Node]: ...

    def read(self, path: str, start: int, length: int) -> Iterator[bytes]:
        """Plaintext bytes of the file from `start`, `length` of them, in pieces."""
        ...


_BAD_ENCODED = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)


def check_url_path(raw_path: bytes, path: str) -> str:
    """Validate the path part after the version (`sub/table.csv`, `` or `sub/`)."""
    if _BAD_ENCODED.search(raw_path) or "\\" in path or "\0" in path:
        raise InvalidInput("encoded slashes, backslashes and NUL are not allowed in file paths")
    stripped = path[:-1] if path.endswith("/") else path
    if stripped:
        for segment in stripped.split("/"):
            if segment in ("", ".", ".."):
                raise InvalidInput("'.', '..' and empty segments are not allowed in file paths")
    return stripped


def join_link(path: str, target: str) -> str | None:
    """The path a relative symlink at `path` names, or None if it would leave the tree."""
    parts = path.split("/")[:-1]
    for step in target.split("/"):
        if step in ("", "."):
            continue
        if step == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(step)
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    length: int


class Unsatisfiable(Exception):
    pass


def ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 only.

    str.isdigit also accepts '²' and other Unicode digits, which int() then refuses (or reads
    as another number): a header or query value is numeric only in ASCII (RFC 9110's DIGIT).
    """
    return text.isascii() and text.isdigit()


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One satisfiable range, None to serve everything, Unsatisfiable for 416."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units and multiple ranges: serve the whole file
    first, dash, last = spec.strip().partition("-")
    if (
        not dash
        or not (ascii_digits(first) or first == "")
        or not (ascii_digits(last) or last == "")
    ):
        return None  # not a byte range (RFC 9110 14.2: ignore it, serve the whole file)
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable
        if size == 0:
            return None  # no last bytes to name (`bytes 0--1/0`): serve the empty whole
        start = max(0, size - suffix)
        return ByteRange(start, size - start)
    start = int(first)
    end = int(last) if last else max(start, size - 1)
    if end < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)


def range_reply(
    wanted: ByteRange | None, size: int, headers: dict[str, str]
) -> tuple[int, int, int]:
    """(status, start, length) of the answer to `wanted` over `size` bytes: 200 and all of it
    without a range, else 206 with its Content-Range added to `headers`."""
    if wanted is None:
        return 200, 0, size
    headers["Content-Range"] = f"bytes {wanted.start}-{wanted.start + wanted.length - 1}/{size}"
    return 206, wanted.start, wanted.length


def unsatisfiable(size: int, headers: dict[str, str]) -> Response:
    """416 for a range that starts past the end of `size` bytes."""
    return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    if header.strip() == "*":
        return True
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return f'"{etag}"' in candidates


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


STREAM_TRIP_BYTES = 1024 * 1024  # bytes gathered per trip to a worker thread while streaming


async def _stream(
    tree: Tree, path: str, start: int, length: int, limiter: trio.CapacityLimiter
) -> AsyncIterator[bytes]:
    """The bytes of `tree.read`, gathered in ~1 MiB per trip to a worker thread.

    A trip per piece (one per block) costs more in thread hand-offs than the pieces cost to
    read. Stops once `length` bytes went out, without asking the iterator for its end.
    """
    pieces: Iterator[bytes] | None = None
    left = length

    def take() -> list[bytes]:
        nonlocal pieces
        if pieces is None:
            pieces = tree.read(path, start, length)
        taken: list[bytes] = []
        size = 0
        while size < min(left, STREAM_TRIP_BYTES):
            piece = next(pieces, None)
            if piece is None:
                break
            taken.append(piece)
            size += len(piece)
        return taken

    while left > 0:
        taken = await trio.to_thread.run_sync(take, limiter=limiter)
        if not taken:
            return
        chunk = taken[0] if len(taken) == 1 else b"".join(taken)  # one send, not one per block
        left -= len(chunk)
        yield chunk


async def _lookup(tree: Tree, path: str, limiter: trio.CapacityLimiter) -> Node | None:
    if getattr(tree, "blocking_lookups", True):
        return await trio.to_thread.run_sync(tree.lookup, path, limiter=limiter)
    return tree.lookup(path)


def listing(
    request: Request,
    title: str,
    nodes: list[Node],
    base_href: str,
    head: str = "",
    banner: str = "",
    parent: bool = False,
) -> Response:
    if wants_json(request):
        return JSONResponse(
            [
                {
                    "name": n.path.rpartition("/")[2],
                    "path": n.path,
                    "kind": n.kind,
                    "size": n.size,
                    **({"target": n.target} if n.target else {}),
                }
                for n in nodes
            ]
        )
    rows = ['<tr><td><a href="../">../</a></td><td></td><td>parent</td></tr>'] if parent else []
    for n in nodes:
        name = n.path.rpartition("/")[2]
        href = quote(name) + ("/" if n.kind == DIRECTORY else "")
        label = html.escape(name) + ("/" if n.kind == DIRECTORY else "")
        extra = f" &rarr; {html.escape(n.target)}" if n.target else ""
        size = f"{n.size:,}" if n.kind == FILE else ""
        rows.append(
            f'<tr><td><a href="{base_href}{href}">{label}</a>{extra}</td>'
            f'<td class="num">{size}</td><td>{n.kind}</td></tr>'
        )
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"{head}</head><body>{banner}<main><h1>{html.escape(title)}</h1>"
        "<table><thead><tr><th>name</th><th>size</th><th>kind</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></main></body></html>"
    )
    return HTMLResponse(body)


# The standard library's built-in table only, not the host's /etc/mime.types: the same file
# gets the same type on every host.
_TYPES = mimetypes.MimeTypes()
# IANA-registered types of the files datasets hold that the built-in table lacks.
for _ext, _type in (
    (".parquet", "application/vnd.apache.parquet"),
    (".sqlite", "application/vnd.sqlite3"),
    (".sqlite3", "application/vnd.sqlite3"),
):
    _TYPES.add_type(_type, _ext)


def media_type(path: str) -> str:
    """The type its extension names (`.parquet`, `.json`, `.csv`), else octet-stream."""
    guessed, encoding = _TYPES.guess_type(path, strict=False)
    if guessed is None or encoding is not None:
        return "application/octet-stream"  # `.csv.gz` is gzip bytes, not text
    return guessed


async def serve_path(
    request: Request,
    tree: Tree,
    path: str,
    limiter: trio.CapacityLimiter,
    title: Callable[[str], str] = lambda p: f"/{p}",
    head: str = "",
    banner: str = "",
) -> Response:
    """Answer GET or HEAD for `path` (already checked by check_url_path) in `tree`."""
    node = await _lookup(tree, path, limiter)
    if node is not None and node.kind == SYMLINK:
        resolved = join_link(node.path, node.target)
        node = None
        if resolved is not None:
            node = await _lookup(tree, resolved, limiter)
            if node is not None and node.kind == SYMLINK:
                node = None  # manifests refuse link chains; never follow one
    if node is None:
        raise NotFound(f"no such file: {echo('/' + path)}")
    if node.kind == DIRECTORY:
        if not request.url.path.endswith("/"):
            # Relative links in the listing need the trailing slash.
            return Response(status_code=301, headers={"Location": request.url.path + "/"})
        nodes = await trio.to_thread.run_sync(tree.children, node.path, limiter=limiter)
        return listing(request, title(node.path), nodes, "", head, banner, bool(node.path))

    etag = f'"{node.etag}"'
    common = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0"}
    if _etag_matches(request.headers.get("if-none-match"), node.etag):
        return Response(status_code=304, headers=common)
    wanted: ByteRange | None
    try:
        wanted = parse_range(request.headers.get("range"), node.size)
    except Unsatisfiable:
        return unsatisfiable(node.size, common)
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is stale: send it all
    headers = {**common}
    status, start, length = range_reply(wanted, node.size, headers)
    headers["Content-Length"] = str(length)
    media = media_type(node.path)
    # A dataset's HTML or SVG must not run as the server's own pages: no sniffing, and a
    # sandbox (an opaque origin, no cookies, no scripts) for whatever the type is.
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media)
    return StreamingResponse(
        _stream(tree, node.path, start, length, limiter), status, headers, media_type=media
    )
