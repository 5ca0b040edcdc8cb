"""Watch fan-out: 1,000 SSE watchers on one `aetherfs hub` process; time from a tag move to the
last watcher told. Prints the figure (run with -s to see it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import Cli
from tests.hub.conftest import HubProcess
from tests.hub.helpers import make_tree

WATCHERS = 1000


async def watch_once(
    host: str, port: int, token: str, ready: trio.Semaphore, told: list[float], seq: int
) -> None:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(
            (
                "GET /v1/datasets/team/geo-db/-/watch?tag=stable HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        buffer = b""
        announced = False
        while True:
            chunk = await stream.receive_some(65536)
            assert chunk, "the hub closed the stream"
            buffer += chunk
            if not announced and b"event: tag" in buffer:
                announced = True
                ready.release()
            if f'"seq": {seq}'.encode() in buffer:
                told.append(time.monotonic())
                return


@pytest.mark.slow
async def test_watch_fanout_1000(
    cli: Cli, start_hub_process: Callable[..., AbstractContextManager[HubProcess]], tmp_path: Path
) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    make_tree(src, size=10_000)
    first = json.loads(cli("push", str(src), "team/geo-db:1.0.0", "--tag", "stable", "--json").out)
    make_tree(src, seed=2, size=10_000)
    second = json.loads(cli("push", str(src), "team/geo-db:1.1.0", "--json").out)
    assert first["manifest"] != second["manifest"]
    token = cli("hub", "token", "create", "--name", "root", "--admin").out.strip()
    with start_hub_process("--poll-interval", "5") as hub:
        host, _, port = hub.url.removeprefix("http://").rpartition(":")
        ready = trio.Semaphore(0, max_value=WATCHERS)
        told: list[float] = []
        async with trio.open_nursery() as nursery:
            for _ in range(WATCHERS):
                nursery.start_soon(watch_once, host, int(port), token, ready, told, 2)
            with trio.fail_after(120):
                for _ in range(WATCHERS):
                    await ready.acquire()
            async with httpx.AsyncClient(base_url=hub.url) as client:
                moved_at = time.monotonic()
                r = await client.put(
                    "/v1/datasets/team/geo-db/-/tags/stable",
                    json={"manifest": second["manifest"]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200
            with trio.fail_after(60):
                while len(told) < WATCHERS:
                    await trio.sleep(0.01)
        last = max(told) - moved_at
        median = sorted(told)[WATCHERS // 2] - moved_at
        print(
            f"\nwatch fan-out: {WATCHERS} watchers, median {median * 1000:.0f} ms, "
            f"last {last * 1000:.0f} ms after the move"
        )
        # The poll interval is 5 s: every watcher was told by the hub's own kick, not a poll.
        assert last < 5
