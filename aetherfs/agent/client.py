"""Handles for programs that talk to a local agent: the typed gRPC stub, and `wait_live`,
which follows the REST watch stream until a channel is live (`aetherfs status --wait`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import trio

from aetherfs.agent.proto import agent_pb2_grpc
from aetherfs.agent.watch import sse_events
from aetherfs.errors import AetherError, InvalidInput, NotFound, StoreUnavailable

RECONNECT_EVERY = 0.5  # seconds between attempts to follow an agent that went away again


def agent_stub(channel: grpc.Channel) -> agent_pb2_grpc.AgentServiceStub:
    """`channel` from grpc.insecure_channel("unix:DATA_ROOT/.agent/grpc.sock") or HOST:PORT."""
    return agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]


class WaitTimeout(AetherError):
    """The channel was not live (at the manifest asked for) before the timeout."""

    exit_code = 124  # what timeout(1) exits with: scripts already know it


Channel = dict[str, Any]  # one subscription's state, as in the status document


def is_live(channel: Channel, manifest: str | None) -> bool:
    """Live at all, or (given a manifest id or a prefix of one) live at that manifest."""
    live = channel.get("live")
    if not live:
        return False
    return manifest is None or str(live["manifest"]).startswith(manifest.lower())


async def wait_live(
    open_client: Callable[[], httpx.AsyncClient],
    where: str,
    ref: str,
    manifest: str | None,
    timeout: float | None,
    report: Callable[[Channel], None],
) -> Channel:
    """Follow `GET /v1/watch?ref=REF` until the channel is live (at `manifest`); every other
    state goes to `report`. An agent that drops the stream (restarting) is followed again;
    one that never answered is an error at once. WaitTimeout after `timeout` seconds."""
    last: Channel | None = None
    followed = False
    with trio.move_on_after(math.inf if timeout is None else timeout):
        while True:
            try:
                async with (
                    open_client() as client,
                    client.stream("GET", "/v1/watch", params={"ref": ref}) as response,
                ):
                    if response.status_code in (400, 404):
                        body = json.loads(await response.aread())
                        error = InvalidInput if response.status_code == 400 else NotFound
                        raise error(f"{body.get('error')} (agent at {where})")
                    if response.status_code != 200:
                        raise StoreUnavailable(
                            f"the agent at {where} answered {response.status_code} to /v1/watch"
                        )
                    followed = True
                    async for event in sse_events(response.aiter_lines()):
                        if event.get("event") != "channel":
                            continue
                        last = json.loads(event["data"])
                        if is_live(last, manifest):
                            return last
                        report(last)
            except (httpx.HTTPError, OSError) as exc:
                if not followed:
                    raise StoreUnavailable(
                        f"no agent answers at {where} ({exc}); is `aetherfs agent` running?"
                    ) from None
            await trio.sleep(RECONNECT_EVERY)
    target = f" at {manifest}" if manifest else ""
    now = ""
    if last is not None:
        live = last.get("live")
        now = f"; it is {last['state']}" + (
            f", live at {str(live['manifest'])[:12]}" if live else ", nothing live"
        )
        if last.get("last_error"):
            now += f", last error: {last['last_error']}"
    raise WaitTimeout(
        f"{ref} was not live{target} after {timeout:g}s{now}; "
        "`aetherfs status` shows what the agent is doing"
    )
