"""Run the hub: Hypercorn's trio worker serving the ASGI app, plus the watch pollers (and
the gRPC server's threads when asked), all inside one nursery."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from aetherfs.hub.app import Hub, build_app
from aetherfs.hub.config import HubConfig
from aetherfs.hub.grpc_server import serve_grpc
from aetherfs.hub.web import web_routes
from aetherfs.repository import StoreRepository


@dataclass(frozen=True, slots=True)
class HubAddresses:
    http: str  # e.g. http://127.0.0.1:7070
    grpc: str | None  # HOST:PORT


def hypercorn_config(config: HubConfig, bind: str) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [bind]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("aetherfs.hub")
    hc.graceful_timeout = 1.0
    if config.tls_cert and config.tls_key:
        hc.certfile = config.tls_cert
        hc.keyfile = config.tls_key
    return hc


async def serve_hub(
    config: HubConfig,
    repo: StoreRepository,
    *,
    task_status: trio.TaskStatus[HubAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound addresses once listening."""
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        hub = Hub.create(config, repo, http)
        await nursery.start(hub.watch.run)
        # Starlette's ASGI types are looser than Hypercorn's; the app is a plain ASGI 3 app.
        app: Any = build_app(hub, web_routes(hub))
        binds = await nursery.start(
            partial(serve, app, hypercorn_config(config, config.listen), mode="asgi")
        )
        grpc_address = None
        if config.grpc_listen:
            grpc_address = await nursery.start(serve_grpc, hub, config.grpc_listen)
        task_status.started(HubAddresses(binds[0], grpc_address))
