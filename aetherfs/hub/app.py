"""The hub's ASGI application (Starlette): REST under /v1, with its OpenAPI document.

Handlers authenticate, then call HubService in a worker thread (the store blocks) under one
CapacityLimiter, so the trio loop never waits on S3. Errors become JSON bodies
`{"error": {"code", "message"}}` with the status the AetherError subclass implies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.errors import (
    AetherError,
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidInput,
    KeyringError,
    NotFound,
    StoreUnavailable,
    bounded,
    echo,
)
from aetherfs.http.files import Unsatisfiable, ascii_digits, parse_range
from aetherfs.hub.auth import Authenticator, OidcVerifier, Principal, bearer
from aetherfs.hub.config import HubConfig
from aetherfs.hub.errors import OutOfRange, Overloaded, TooLarge, Unauthenticated
from aetherfs.hub.openapi import openapi_document
from aetherfs.hub.service import HubService
from aetherfs.hub.watch import WatchHub
from aetherfs.repository import StoreRepository

T = TypeVar("T")
COOKIE = "aetherfs_token"
SSE_PING_SECONDS = 15.0

_STATUS: list[tuple[type[AetherError], int, str]] = [
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (TooLarge, 413, "too_large"),
    (OutOfRange, 416, "out_of_range"),
    (Overloaded, 429, "busy"),
    (InvalidInput, 400, "invalid"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (IntegrityError, 422, "integrity"),
    (StoreUnavailable, 503, "unavailable"),
    (KeyringError, 500, "keyring"),
]


def error_status(exc: AetherError) -> tuple[int, str]:
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "error"


def error_response(exc: AetherError) -> JSONResponse:
    status, code = error_status(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="aetherfs"'} if status == 401 else None
    message = bounded(str(exc))
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


@dataclass(slots=True)
class Hub:
    """Everything one hub process holds: no state of its own beyond caches."""

    config: HubConfig
    repo: StoreRepository
    service: HubService
    auth: Authenticator
    watch: WatchHub
    limiter: trio.CapacityLimiter
    http: httpx.AsyncClient

    @classmethod
    def create(cls, config: HubConfig, repo: StoreRepository, http: httpx.AsyncClient) -> Hub:
        service = HubService(repo, config.acl_cache_seconds, config.tag_cache_seconds)
        limiter = trio.CapacityLimiter(config.store_threads)
        oidc = OidcVerifier(config.oidc, http) if config.oidc else None
        auth = Authenticator(service.tokens, oidc, limiter, config.token_cache_seconds)
        watch = WatchHub(service.tag_heads, limiter, config.poll_interval)
        return cls(config, repo, service, auth, watch, limiter, http)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(partial(fn, *args), limiter=self.limiter)

    async def principal(self, request: Request, cookie: bool = False) -> Principal | None:
        credential = bearer(request.headers.get("authorization"))
        if credential is None and cookie:
            credential = request.cookies.get(COOKIE) or None
        return await self.auth.authenticate(credential)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not ascii_digits(declared):
            raise InvalidInput("bad Content-Length")
        if int(declared) > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
    parts: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    raw = await read_body(request, limit)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the body must be a JSON object")
    return doc


def _field(doc: dict[str, Any], name: str, kind: type[T], optional: bool = False) -> T | None:
    value = doc.get(name)
    if value is None and optional:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 3.0 is the integer 3
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"field {name!r} must be a {kind.__name__}")
    return value


def split_dataset_path(rest: str) -> tuple[str, str]:
    """`team/geo-db/-/tags/stable` -> (`team/geo-db`, `tags/stable`). `-` is never a segment."""
    dataset, _, sub = rest.partition("/-/")
    if not sub and rest.endswith("/-"):
        dataset = rest[:-2]
    return check_dataset_name(dataset.strip("/")), sub.strip("/")


def build_app(hub: Hub, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    service = hub.service
    limits = hub.config.limits

    async def info(request: Request) -> Response:
        return JSONResponse(await hub.run(service.info))

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def whoami(request: Request) -> Response:
        who = await hub.principal(request)
        if who is None:
            raise Unauthenticated("authentication required: send `Authorization: Bearer TOKEN`")
        return JSONResponse(who.to_json())

    async def datasets(request: Request) -> Response:
        who = await hub.principal(request)
        if request.method == "POST":
            doc = await read_json(request, limits.json_body)
            name = str(_field(doc, "name", str))
            return JSONResponse(await hub.run(service.create_dataset, who, name), 201)
        return JSONResponse(await hub.run(service.list_datasets, who))

    async def dataset(request: Request) -> Response:
        who = await hub.principal(request)
        name, sub = split_dataset_path(request.path_params["rest"])
        parts = sub.split("/") if sub else []
        method = request.method
        if not parts:
            if method == "DELETE":
                await hub.run(service.delete_dataset, who, name)
                return Response(status_code=204)
            if method == "GET":
                return JSONResponse(await hub.run(service.get_dataset, who, name))
        elif parts == ["tags"] and method == "GET":
            return JSONResponse(await hub.run(service.list_tags, who, name))
        elif len(parts) == 2 and parts[0] == "tags":
            tag = check_tag(parts[1])
            if method == "GET":
                return JSONResponse(await hub.run(service.get_tag, who, name, tag))
            if method == "PUT":
                doc = await read_json(request, limits.json_body)
                manifest = ManifestId.from_hex(str(_field(doc, "manifest", str)))
                expect = _field(doc, "expect_seq", int, optional=True)
                if expect is not None and expect < 0:
                    raise InvalidInput("expect_seq must be 0 or more")
                result = await hub.run(service.set_tag, who, name, tag, manifest, expect)
                hub.watch.kick(name)
                return JSONResponse(result)
        elif len(parts) == 3 and parts[0] == "tags" and parts[2] == "history":
            if method == "GET":
                tag = check_tag(parts[1])
                return JSONResponse(await hub.run(service.tag_history, who, name, tag))
        elif len(parts) == 2 and parts[0] == "manifests":
            manifest_id = ManifestId.from_hex(parts[1])
            if method == "GET":
                stored = await hub.run(service.get_manifest, who, name, manifest_id)
                return Response(
                    stored,
                    media_type="application/octet-stream",
                    headers={
                        "ETag": f'"{manifest_id.hex()}"',
                        "Cache-Control": "private, max-age=31536000, immutable",
                    },
                )
            if method == "PUT":
                # Check the role before reading a large body.
                await hub.run(service.require, who, name, "write")
                body = await read_body(request, limits.manifest)
                created = await hub.run(service.put_manifest, who, name, manifest_id, body)
                return JSONResponse(
                    {"manifest": manifest_id.hex(), "created": created}, 201 if created else 200
                )
        elif len(parts) == 2 and parts[0] == "packs":
            return await pack(request, who, name, PackId.from_hex(parts[1]))
        elif parts == ["keys"] and method == "GET":
            return JSONResponse(
                await hub.run(service.keys, who, name), headers={"Cache-Control": "no-store"}
            )
        elif parts == ["grants"]:
            if method == "GET":
                return JSONResponse(await hub.run(service.grants, who, name))
            if method == "PUT":
                doc = await read_json(request, limits.json_body)
                subject = str(_field(doc, "subject", str))
                role = _field(doc, "role", str, optional=True)
                return JSONResponse(await hub.run(service.grant, who, name, subject, role))
        elif parts == ["diff"] and method == "GET":
            a = check_tag(request.query_params.get("a", ""))
            b = check_tag(request.query_params.get("b", ""))
            return JSONResponse(await hub.run(service.diff, who, name, a, b))
        elif parts == ["watch"] and method == "GET":
            return await watch(request, who, name)
        if method not in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            return JSONResponse({"error": {"code": "method", "message": "method not allowed"}}, 405)
        raise NotFound(f"no such resource: {echo(request.url.path)}")

    async def pack(request: Request, who: Principal | None, name: str, pack_id: PackId) -> Response:
        method = request.method
        if method == "PUT":
            await hub.run(service.require, who, name, "write")  # before reading a large body
            body = await read_body(request, limits.pack)
            created = await hub.run(service.put_pack, who, name, pack_id, body)
            return JSONResponse(
                {"pack": pack_id.hex(), "created": created}, 201 if created else 200
            )
        if method not in ("GET", "HEAD"):
            return JSONResponse({"error": {"code": "method", "message": "method not allowed"}}, 405)
        size = await hub.run(service.pack_size, who, name, pack_id)
        headers = {
            "ETag": f'"{pack_id.hex()}"',
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, max-age=31536000, immutable",
        }
        try:
            wanted = parse_range(request.headers.get("range"), size)
        except Unsatisfiable:
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        start, length, status = (
            (0, size, 200) if wanted is None else (wanted.start, wanted.length, 206)
        )
        if wanted is not None:
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        if method == "HEAD":
            headers["Content-Length"] = str(length)
            return Response(status_code=status, headers=headers)
        data = await hub.run(service.get_pack_range, who, name, pack_id, start, length)
        return Response(data, status, headers=headers, media_type="application/octet-stream")

    async def watch(request: Request, who: Principal | None, name: str) -> Response:
        await hub.run(service.require, who, name, "read")
        tags = frozenset(check_tag(t) for t in request.query_params.getlist("tag")) or None
        subscription = hub.watch.subscribe(name, tags)

        async def events() -> AsyncIterator[str]:
            try:
                yield ": watching\n\n"
                while True:
                    event = await subscription.next(timeout=SSE_PING_SECONDS)
                    if event is None:
                        yield ": ping\n\n"
                        continue
                    yield (
                        f"id: {event.tag}:{event.seq}\nevent: tag\n"
                        f"data: {json.dumps(event.to_json())}\n\n"
                    )
            except trio.EndOfChannel:
                return
            finally:
                subscription.close()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def agents(request: Request) -> Response:
        who = await hub.principal(request)
        return JSONResponse(await hub.run(service.fleet, who))

    async def agent_status(request: Request) -> Response:
        who = await hub.principal(request)
        agent_id = request.path_params["agent"]
        if request.method == "PUT":
            report = await read_json(request, limits.status_report)
            await hub.run(service.put_status, who, agent_id, report)
            return Response(status_code=204)
        return JSONResponse(await hub.run(service.get_status, who, agent_id))

    async def audit(request: Request) -> Response:
        who = await hub.principal(request)
        day = request.query_params.get("day")
        limit_text = request.query_params.get("limit", "200")
        if not ascii_digits(limit_text) or not 1 <= int(limit_text) <= 10_000:
            raise InvalidInput("limit must be a number from 1 to 10000")
        return JSONResponse(await hub.run(service.audit_entries, who, day, int(limit_text)))

    async def fleet(request: Request) -> Response:
        return JSONResponse(await hub.run(service.fleet_info))

    async def join_tokens(request: Request) -> Response:
        who = await hub.principal(request)
        doc = await read_json(request, limits.json_body)
        ttl = _field(doc, "ttl_seconds", int, optional=True)
        return JSONResponse(await hub.run(service.create_join_token, who, float(ttl or 3600)), 201)

    async def enrol(request: Request) -> Response:
        doc = await read_json(request, limits.json_body)
        join_token = str(_field(doc, "join_token", str))
        agent = str(_field(doc, "agent", str))
        key_hex = str(_field(doc, "public_key", str))
        try:
            public_key = bytes.fromhex(key_hex)
        except ValueError:
            raise InvalidInput("public_key must be hex") from None
        issued = await hub.run(service.enrol, join_token, agent, public_key)
        return JSONResponse(issued, 201, headers={"Cache-Control": "no-store"})

    async def revocations(request: Request) -> Response:
        who = await hub.principal(request)
        if request.method == "POST":
            doc = await read_json(request, limits.json_body)
            serial = _field(doc, "serial", str, optional=True)
            agent = _field(doc, "agent", str, optional=True)
            return JSONResponse(await hub.run(service.revoke_certificates, who, serial, agent))
        return JSONResponse(await hub.run(service.revocations, who))

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AetherError)
        return error_response(exc)

    routes: list[BaseRoute] = [
        Route("/v1/info", info, methods=["GET"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Route("/v1/datasets", datasets, methods=["GET", "POST"]),
        Route(
            "/v1/datasets/{rest:path}", dataset, methods=["GET", "HEAD", "PUT", "POST", "DELETE"]
        ),
        Route("/v1/agents", agents, methods=["GET"]),
        Route("/v1/agents/{agent}/status", agent_status, methods=["GET", "PUT"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/v1/fleet", fleet, methods=["GET"]),
        Route("/v1/fleet/join-tokens", join_tokens, methods=["POST"]),
        Route("/v1/fleet/enrol", enrol, methods=["POST"]),
        Route("/v1/fleet/revocations", revocations, methods=["GET", "POST"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, exception_handlers={AetherError: on_error})
