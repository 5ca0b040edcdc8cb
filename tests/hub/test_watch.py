"""The watch endpoint (server-sent events): moves through this hub, another hub over the same
store, and straight on the store all reach a subscriber."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from aetherfs.repository import StoreRepository
from tests.hub.helpers import RunningHub, publish, start_hub


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "tag":
            yield json.loads(line[6:])


async def test_watch_sees_moves_from_this_hub_another_hub_and_the_store(
    hub: RunningHub, nursery: trio.Nursery, repo: StoreRepository, tmp_path: Path
) -> None:
    v1 = publish(repo, tmp_path / "v1", "team/geo-db", ["1.0.0", "stable"])
    v2 = publish(repo, tmp_path / "v2", "team/geo-db", ["1.1.0"], seed=2)
    v3 = publish(repo, tmp_path / "v3", "team/geo-db", ["1.2.0"], seed=3)
    # A second hub over the same store: the subscriber on the first must see its moves too.
    other = await start_hub(nursery, repo)
    url = "/v1/datasets/team/geo-db/-/watch?tag=stable"
    async with hub.client(hub.admin) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        first = await anext(events)
        assert (first["tag"], first["seq"], first["manifest"]) == (
            "stable",
            1,
            v1.manifest_id.hex(),
        )

        async with hub.client(hub.admin) as writer:
            started = trio.current_time()
            await writer.put(
                "/v1/datasets/team/geo-db/-/tags/stable", json={"manifest": v2.manifest_id.hex()}
            )
            moved = await anext(events)
            assert (moved["seq"], moved["manifest"]) == (2, v2.manifest_id.hex())
            assert trio.current_time() - started < 0.5  # told at once, not at the next poll

        async with other.client(other.admin) as writer:
            await writer.put(
                "/v1/datasets/team/geo-db/-/tags/stable", json={"manifest": v3.manifest_id.hex()}
            )
        with trio.fail_after(3):
            moved = await anext(events)
        assert (moved["seq"], moved["manifest"]) == (3, v3.manifest_id.hex())

        await trio.to_thread.run_sync(repo.set_tag, "team/geo-db", "stable", v1.manifest_id)
        with trio.fail_after(3):
            moved = await anext(events)
        assert (moved["seq"], moved["manifest"]) == (4, v1.manifest_id.hex())
    other.cancel.cancel()


async def test_watch_needs_read(hub: RunningHub, tmp_path: Path) -> None:
    publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    async with hub.client(hub.token("nobody")) as client:
        r = await client.get("/v1/datasets/team/geo-db/-/watch")
        assert r.status_code == 403
