"""The HTTP file server: whole files, ranges across block boundaries, validators, listings,
symlinks, and refusals of path tricks sent byte for byte over a raw socket."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from aetherfs.core.chunking import ChunkParams
from aetherfs.ops.push import push_directory
from tests.hub.helpers import RunningHub

SMALL_CHUNKS = ChunkParams(4096, 16384, 65536)


def publish_files(hub: RunningHub, root: Path) -> bytes:
    rng = random.Random(7)
    data = rng.randbytes(400_000)
    (root / "sub").mkdir(parents=True)
    (root / "big.bin").write_bytes(data)
    (root / "sub/a b.txt").write_text("spaces & <tags>\n")
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("big.bin")
    push_directory(hub.repo, root, "team/geo-db", ["1.0.0"], params=SMALL_CHUNKS)
    return data


async def raw_get(hub: RunningHub, target: str, token: str) -> int:
    """Send the request line exactly as given (clients normalise `..` away)."""
    host, _, port = hub.url.removeprefix("http://").rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n"
        )
        await stream.send_all(request.encode())
        first = b""
        while b"\r\n" not in first:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            first += chunk
    return int(first.split(b" ")[1])


async def test_whole_files_ranges_and_validators(hub: RunningHub, tmp_path: Path) -> None:
    data = publish_files(hub, tmp_path / "src")
    url = "/files/team/geo-db/1.0.0/big.bin"
    async with hub.client(hub.admin) as c:
        whole = await c.get(url)
        assert whole.status_code == 200 and whole.content == data
        etag = whole.headers["etag"]
        assert whole.headers["accept-ranges"] == "bytes"

        head = await c.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(data))

        # A range that crosses several blocks (chunks are 4-64 KiB here).
        r = await c.get(url, headers={"Range": "bytes=100000-250000"})
        assert r.status_code == 206 and r.content == data[100000:250001]
        assert r.headers["content-range"] == f"bytes 100000-250000/{len(data)}"
        r = await c.get(url, headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == data[-10:]
        r = await c.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
        assert r.content == data[-5:]
        r = await c.get(url, headers={"Range": f"bytes=0-{len(data) * 2}"})
        assert r.status_code == 206 and r.content == data

        for past in (f"bytes={len(data)}-", f"bytes={len(data) + 10}-{len(data) + 20}", "bytes=-0"):
            r = await c.get(url, headers={"Range": past})
            assert r.status_code == 416, past
            assert r.headers["content-range"] == f"bytes */{len(data)}"
        for malformed in ("bytes=abc", "bytes=5-2", "pages=1-2", "bytes=1-2,5-6", "bytes"):
            r = await c.get(url, headers={"Range": malformed})
            assert r.status_code == 200 and len(r.content) == len(data), malformed

        assert (await c.get(url, headers={"If-None-Match": etag})).status_code == 304
        assert (await c.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
        stale = await c.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
        assert stale.status_code == 200 and len(stale.content) == len(data)

        empty = await c.get("/files/team/geo-db/1.0.0/empty")
        assert empty.status_code == 200 and empty.content == b""
        # No last bytes of nothing to name (it was `Content-Range: bytes 0--1/0`): all of it.
        empty = await c.get("/files/team/geo-db/1.0.0/empty", headers={"Range": "bytes=-5"})
        assert empty.status_code == 200 and "content-range" not in empty.headers
        # The type its extension names (it was octet-stream for every file), never sniffed.
        assert whole.headers["content-type"] == "application/octet-stream"
        text = await c.get("/files/team/geo-db/1.0.0/sub/a%20b.txt")
        assert text.headers["content-type"].startswith("text/plain")
        assert text.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in text.headers["content-security-policy"]
        assert (await c.get("/files/team/geo-db/1.0.0/link")).content == data
        assert (await c.get("/files/team/geo-db/1.0.0/sub/a%20b.txt")).text == "spaces & <tags>\n"
        assert (await c.get("/files/team/geo-db/1.0.0/nope")).status_code == 404
        assert (await c.get("/files/team/geo-db/9.9.9/big.bin")).status_code == 404


async def test_directory_listings(hub: RunningHub, tmp_path: Path) -> None:
    publish_files(hub, tmp_path / "src")
    async with hub.client(hub.admin) as c:
        listing = await c.get("/files/team/geo-db/1.0.0/", headers={"Accept": "application/json"})
        assert [(n["name"], n["kind"]) for n in listing.json()] == [
            ("big.bin", "file"),
            ("empty", "file"),
            ("link", "symlink"),
            ("sub", "directory"),
        ]
        page = await c.get("/files/team/geo-db/1.0.0/sub/", headers={"Accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert "a%20b.txt" in page.text and "spaces" not in page.text
        assert "a b.txt" in page.text
        moved = await c.get("/files/team/geo-db/1.0.0/sub")
        assert moved.status_code == 301 and moved.headers["location"].endswith("/sub/")


async def test_path_tricks_and_access(hub: RunningHub, tmp_path: Path) -> None:
    publish_files(hub, tmp_path / "src")
    base = "/files/team/geo-db/1.0.0"
    for target in (
        f"{base}/../../1.0.0/big.bin",
        f"{base}/sub/../big.bin",
        f"{base}/./big.bin",
        f"{base}/sub%2Fa%20b.txt",
        f"{base}/sub%2fa%20b.txt",
        f"{base}/sub%5Ca%20b.txt",
        f"{base}//big.bin",
        f"{base}/big.bin%00",
        "/files/team/../team/geo-db/1.0.0/big.bin",
    ):
        assert await raw_get(hub, target, hub.admin) == 400, target
    assert await raw_get(hub, f"{base}/big.bin", hub.admin) == 200
    outsider = hub.token("olga")
    async with hub.client() as anon, hub.client(outsider) as o:
        assert (await anon.get(f"{base}/big.bin")).status_code == 401
        known = await o.get(f"{base}/big.bin")
        unknown = await o.get("/files/team/nothing/1.0.0/big.bin")
        assert known.status_code == unknown.status_code == 403
        assert known.json() == unknown.json()
