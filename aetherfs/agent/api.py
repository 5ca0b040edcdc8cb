"""The agent's REST surface (Starlette on Hypercorn's trio worker, in the daemon's nursery).

GET  /v1/status          the status document (`aetherfs status --json` prints it)
GET  /v1/watch?ref=NAME:CHANNEL   server-sent events: the channel's state now, at each switch
                         and every WATCH_EVERY seconds (`aetherfs status --wait` follows it)
POST /v1/poll            check every channel now
POST /v1/shutdown        stop the agent
GET  /metrics            Prometheus text format
GET  /files/NAME/CHANNEL/PATH   a file of a live version (Range, ETag); reads are counted
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aetherfs.agent.config import Subscription
from aetherfs.agent.dataroot import VERSIONS, DataRoot
from aetherfs.agent.files import VersionTree
from aetherfs.agent.metrics import render_metrics
from aetherfs.agent.ports import Surface
from aetherfs.core.ids import ManifestId
from aetherfs.errors import AetherError, InvalidInput, NotFound, echo, envelope
from aetherfs.http.files import check_url_path, serve_path

WATCH_EVERY = 1.0  # seconds between states sent while the channel does not switch (progress)


@dataclass(frozen=True, slots=True)
class LiveFiles:
    """What `/files/` reads: the data root's live versions, on threads behind `limiter`, each
    read counted in status."""

    dataroot: DataRoot
    limiter: trio.CapacityLimiter
    count_read: Callable[[str, str], None]


def build_app(surface: Surface, live: LiveFiles) -> Starlette:
    view, control = surface.status, surface.control

    async def status(request: Request) -> Response:
        return JSONResponse(view.snapshot())

    async def watch(request: Request) -> Response:
        ref = request.query_params.get("ref", "")
        try:
            wanted = Subscription.parse(ref)
        except InvalidInput as exc:
            return JSONResponse(envelope(exc), status_code=exc.http_status)
        if view.channel(wanted) is None:
            subscribed = ", ".join(str(s) for s in view.subscriptions()) or "nothing"
            missing = NotFound(f"this agent does not subscribe to {wanted} (it keeps {subscribed})")
            return JSONResponse(envelope(missing), status_code=missing.http_status)
        # Listening starts before the first state is read: no switch falls in between.
        events = view.listen()

        async def stream() -> AsyncIterator[str]:
            async with events:
                while True:
                    yield f"event: channel\ndata: {json.dumps(view.channel(wanted))}\n\n"
                    with trio.move_on_after(WATCH_EVERY):
                        try:
                            await events.receive()
                        except trio.EndOfChannel:
                            return  # dropped for falling behind: the client reconnects

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def poll(request: Request) -> Response:
        control.poke()
        return JSONResponse({"ok": True})

    async def shutdown(request: Request) -> Response:
        control.request_shutdown("rest")
        return JSONResponse({"ok": True})

    async def metrics(request: Request) -> Response:
        body, content_type = render_metrics(view)
        return Response(body, media_type=content_type)

    async def files(request: Request) -> Response:
        rest = str(request.path_params["rest"])
        raw = request.scope.get("raw_path", b"")
        found = resolve_live_version(live.dataroot.root, rest)
        if found is None:
            raise NotFound(f"no live version at /files/{echo(rest)}")
        ref, inner, version = found
        inner = check_url_path(raw, inner)
        tree = await trio.to_thread.run_sync(
            version_tree, live.dataroot, version, limiter=live.limiter
        )
        response = await serve_path(
            request, tree, inner, live.limiter, title=lambda p: f"{ref}/{p}"
        )
        if isinstance(response, StreamingResponse) and request.method == "GET":
            live.count_read(ref, inner)
        return response

    async def on_error(request: Request, exc: Exception) -> Response:
        # The status and envelope the error's class names: the hub's, for the same error.
        assert isinstance(exc, AetherError)
        return JSONResponse(envelope(exc), exc.http_status)

    return Starlette(
        exception_handlers={AetherError: on_error},
        routes=[
            Route("/v1/status", status),
            Route("/v1/watch", watch),
            Route("/v1/poll", poll, methods=["POST"]),
            Route("/v1/shutdown", shutdown, methods=["POST"]),
            Route("/metrics", metrics),
            Route("/files/{rest:path}", files, methods=["GET", "HEAD"]),
        ],
    )


def resolve_live_version(root: Path, rel: str) -> tuple[str, str, Path] | None:
    """`team/geo-db/stable/a/b.db` -> ("team/geo-db:stable", "a/b.db", version dir), if live.

    The channel is the first path component that is a symlink into .versions; what follows is
    looked up inside that version by the file server, which refuses `..` and link escapes.
    """
    parts = rel.split("/")
    versions = (root / VERSIONS).resolve()
    for i in range(1, len(parts) + 1):
        name = parts[i - 1]
        if name in ("", ".", "..") or name.startswith("."):
            return None
        link = root.joinpath(*parts[:i])
        if i >= 2 and link.is_symlink():
            version = link.resolve()
            if version.parent != versions or not version.is_dir():
                return None
            return f"{'/'.join(parts[: i - 1])}:{name}", "/".join(parts[i:]), version
        if not link.is_dir() or link.is_symlink():
            return None
    return None


def version_tree(dataroot: DataRoot, version: Path) -> VersionTree:
    info = dataroot.version_info(ManifestId.from_hex(version.name))
    prints = {path: fp for fp, path in info.fingerprints.items()} if info else {}
    return VersionTree(version, version.name, prints)


async def serve_http(
    surface: Surface,
    live: LiveFiles,
    bind: str,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    if bind.startswith("unix:"):
        path = Path(bind[len("unix:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()  # left by a previous run; the data root lock says it is ours
    app: Any = build_app(surface, live)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
        if bind.startswith("unix:"):
            os.chmod(bind[len("unix:") :], 0o660)
        surface.log.info("http.listening", bind=",".join(binds))
        task_status.started()
