"""The agent's REST surface (Starlette on Hypercorn's trio worker, in the daemon's nursery).

GET  /v1/status          the status document (`aetherfs status --json` prints it)
POST /v1/poll            check every channel now
POST /v1/shutdown        stop the agent
GET  /metrics            Prometheus text format
GET  /files/NAME/CHANNEL/PATH   a file of a live version (Range, ETag); reads are counted
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from aetherfs.agent.metrics import render_metrics

if TYPE_CHECKING:
    from aetherfs.agent.daemon import Agent


def build_app(agent: Agent) -> Starlette:
    async def status(request: Request) -> Response:
        return JSONResponse(agent.state.snapshot())

    async def poll(request: Request) -> Response:
        agent.poke()
        return JSONResponse({"ok": True})

    async def shutdown(request: Request) -> Response:
        agent.request_shutdown("rest")
        return JSONResponse({"ok": True})

    async def metrics(request: Request) -> Response:
        body, content_type = render_metrics(agent.state)
        return Response(body, media_type=content_type)

    async def files(request: Request) -> Response:
        rel = str(request.path_params["rest"])
        found = resolve_live_file(agent.config.data_root, rel)
        if found is None:
            return JSONResponse({"error": f"no live file at {rel}"}, status_code=404)
        ref, inner, path, manifest = found
        # Versions are immutable: (manifest, path) names the bytes for good.
        etag = '"' + blake3.blake3(f"{manifest}/{inner}".encode()).hexdigest()[:32] + '"'
        cache = {"etag": etag, "cache-control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=cache)
        agent.state.count_read(ref, inner)
        return FileResponse(path, headers=cache)

    return Starlette(
        routes=[
            Route("/v1/status", status),
            Route("/v1/poll", poll, methods=["POST"]),
            Route("/v1/shutdown", shutdown, methods=["POST"]),
            Route("/metrics", metrics),
            Route("/files/{rest:path}", files),
        ]
    )


def resolve_live_file(root: Path, rel: str) -> tuple[str, str, Path, str] | None:
    """`team/geo-db/stable/a/b.db` -> ("team/geo-db:stable", "a/b.db", real path, manifest).

    The channel is the first path component that is a symlink into .versions; the rest is
    resolved inside that version and must stay inside it.
    """
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts[:-1]) or len(parts) < 3:
        return None
    for i in range(2, len(parts)):
        link = root.joinpath(*parts[:i])
        if link.is_symlink():
            version = link.resolve()
            if version.parent != (root / ".versions").resolve():
                return None
            target = (version / "/".join(parts[i:])).resolve()
            if not target.is_relative_to(version) or not target.is_file():
                return None
            ref = f"{'/'.join(parts[: i - 1])}:{parts[i - 1]}"
            return ref, "/".join(parts[i:]), target, version.name
        if not link.is_dir():
            return None
    return None


async def serve_http(
    agent: Agent, bind: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
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
    app: Any = build_app(agent)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
        if bind.startswith("unix:"):
            os.chmod(bind[len("unix:") :], 0o660)
        agent.log.info("http.listening", bind=",".join(binds))
        task_status.started()
