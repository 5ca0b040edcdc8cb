"""The hub's ASGI application: REST under /v1 (FastAPI on Starlette, so on anyio and trio),
with its OpenAPI document generated from these routes and `aetherfs/hub/models.py`.

Handlers authenticate, then call HubService in a worker thread (the store blocks) under one
CapacityLimiter, so the trio loop never waits on S3. Errors become JSON bodies
`{"error": {"code", "message"}}` with the status the AetherError subclass names; so do the
router's own 404s and 405s (with `Allow`), and OPTIONS answers the methods a resource has.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypeVar

import httpx
import trio
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.errors import AetherError, InvalidInput, NotFound, bounded, echo, envelope
from aetherfs.http.files import (
    Unsatisfiable,
    ascii_digits,
    parse_range,
    range_reply,
    unsatisfiable,
)
from aetherfs.hub import models
from aetherfs.hub.auth import Authenticator, OidcVerifier, Principal, bearer
from aetherfs.hub.config import HubConfig, Limits
from aetherfs.hub.errors import PreconditionFailed, TooLarge, Unauthenticated
from aetherfs.hub.openapi import openapi_document
from aetherfs.hub.service import HubService
from aetherfs.hub.watch import WatchHub
from aetherfs.repository import StoreRepository

T = TypeVar("T")
COOKIE = "aetherfs_token"
SSE_PING_SECONDS = 15.0
_IMMUTABLE = "private, max-age=31536000, immutable"
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_BINARY_BODY = {"requestBody": {"required": True, "content": _BINARY}}


def error_response(exc: AetherError) -> JSONResponse:
    """The envelope and HTTP status the error's class names (aetherfs.errors)."""
    status = exc.http_status
    headers = {"WWW-Authenticate": 'Bearer realm="aetherfs"'} if status == 401 else None
    return JSONResponse(envelope(exc), status, headers=headers)


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
        service = HubService(
            repo,
            config.acl_cache_seconds,
            config.tag_cache_seconds,
            cert_lifetime=config.cert_days * 86400.0,
        )
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
    """The body, refused (413) as soon as it is over `limit`: `Content-Length` is not trusted."""
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


class DatasetConvertor(Convertor[str]):
    """A dataset name in a path: segments, none of them `-`, which starts a sub-resource."""

    regex = r"(?:[^/-][^/]*|-[^/]+)(?:/(?:[^/-][^/]*|-[^/]+))*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("dataset", DatasetConvertor())


def _body_limit(method: str, path: str, limits: Limits) -> int | None:
    """How much of a JSON body to take before any handler; None: the handler reads it."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if "/-/manifests/" in path or "/-/packs/" in path:
        return None  # large; read by the handler once the caller may write
    if path.startswith("/v1/agents/"):
        return limits.status_report
    return limits.json_body


class BodyLimit:
    """Takes a JSON body up to its limit before FastAPI parses it (which reads without one)."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = None
        if scope["type"] == "http":
            limit = _body_limit(scope["method"], scope["path"], self.limits)
        if limit is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(Request(scope, receive), limit)
        except AetherError as exc:
            await error_response(exc)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # http.disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at this path (HEAD with GET, and OPTIONS)."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches({**scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
        elif match == Match.FULL and route_methods is None:
            methods |= {"GET", "HEAD"}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


class Methods:
    """OPTIONS answered with the methods the resource has; HEAD served as GET without body."""

    def __init__(self, app: ASGIApp, routes: Callable[[], list[BaseRoute]]) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("OPTIONS", "HEAD"):
            await self.app(scope, receive, send)
            return
        allowed = allowed_methods(self.routes(), scope)
        if scope["method"] == "OPTIONS":
            response: Response
            if not allowed:
                response = error_response(NotFound(f"no such resource: {echo(scope['path'])}"))
            else:
                response = Response(status_code=204, headers={"Allow": ", ".join(allowed)})
            await response(scope, receive, send)
            return
        if self._serves_head(scope):
            await self.app(scope, receive, send)
            return

        async def no_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, no_body)

    def _serves_head(self, scope: Scope) -> bool:
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return True
        return False


def _tag_etag(seq: int) -> str:
    return f'"{seq}"'


def preconditions_hold(if_match: str | None, if_none_match: str | None, seq: int) -> bool:
    """RFC 9110 13.1.1-2 on a tag whose ETag is its seq (`seq` 0: the tag does not exist)."""

    def listed(header: str) -> set[str]:
        return {part.strip() for part in header.split(",")}

    if if_match is not None:
        tags = listed(if_match)
        if not (("*" in tags and seq > 0) or (seq > 0 and _tag_etag(seq) in tags)):
            return False
    if if_none_match is not None:
        tags = listed(if_none_match)
        if ("*" in tags and seq > 0) or (seq > 0 and _tag_etag(seq) in tags):
            return False
    return True


def _first_problem(exc: RequestValidationError) -> str:
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        said = problem.get("input")
        got = f", not {echo(str(said))}" if isinstance(said, str | int | float) else ""
        return f"{where or 'the body'}: {problem.get('msg', 'not acceptable')}{got}"
    return "the request is not acceptable"


# The parameters every route shares, with the schemas the document shows (names.py's).
DatasetPath = Annotated[str, Path(description="a dataset name, '/' and all")]
TagPath = Annotated[str, Path(description="a version tag or a channel")]
# Checked by the id classes (their messages echo a bounded part of what was sent).
ManifestPath = Annotated[str, Path(json_schema_extra={"pattern": models.HEX64})]
PackPath = Annotated[str, Path(json_schema_extra={"pattern": models.HEX64})]
AgentPath = Annotated[str, Path(pattern=models.agent_schema()["pattern"])]
LimitQuery = Annotated[str, Query(pattern=r"^(10000|[1-9][0-9]{0,3})$")]
DayQuery = Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
FleetQuery = Annotated[
    str | None,
    Query(pattern=models.FLEET_PATTERN, description="an admin's choice; an agent's own if given"),
]


async def _principal(request: Request) -> Principal | None:
    hub: Hub = request.app.state.hub
    return await hub.principal(request)


Who = Annotated[Principal | None, Depends(_principal)]


def build_app(hub: Hub, extra_routes: list[BaseRoute] | None = None) -> ASGIApp:
    """The REST API (and `extra_routes`, the web pages, kept out of the document)."""
    service = hub.service
    limits = hub.config.limits

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AetherError)
        return error_response(exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(InvalidInput(bounded(_first_problem(exc), 300)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_response(NotFound(f"no such resource: {echo(request.url.path)}"))
        if exc.status_code == 405:
            allowed = allowed_methods(app.router.routes, request.scope)
            body = {"error": {"code": "method_not_allowed", "message": "method not allowed"}}
            return JSONResponse(body, 405, headers={"Allow": ", ".join(allowed)})
        code = "invalid" if exc.status_code == 400 else "error"
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, exc.status_code)

    handlers: dict[
        int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
    ] = {
        AetherError: on_error,
        RequestValidationError: on_invalid,
        HTTPException: on_http,
    }
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, exception_handlers=handlers)
    app.state.hub = hub
    document: dict[str, Any] = {}

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not document:
            document.update(openapi_document(app))
        return JSONResponse(document)

    @app.get("/v1/info", summary="the store id and the registry's signing keys")
    async def info() -> models.Info:
        return await hub.run(service.info)

    @app.get("/v1/whoami", summary="who the credentials name")
    async def whoami(who: Who) -> models.Who:
        if who is None:
            raise Unauthenticated("authentication required: send `Authorization: Bearer TOKEN`")
        return models.Who.model_validate(who.to_json())

    # Datasets -----------------------------------------------------------------------------
    @app.get("/v1/datasets", summary="datasets the caller may read, with their tags")
    async def list_datasets(who: Who) -> list[models.DatasetSummary]:
        return await hub.run(service.list_datasets, who)

    @app.post("/v1/datasets", status_code=201, summary="create a dataset (hub admin)")
    async def create_dataset(who: Who, body: models.CreateDataset) -> models.DatasetName:
        return await hub.run(service.create_dataset, who, body.name)

    d = "/v1/datasets/{dataset:dataset}/-"

    @app.get(
        d + "/tags",
        summary="the current record of each tag that verifies (the dataset names the others)",
    )
    async def list_tags(who: Who, dataset: DatasetPath) -> dict[str, models.Tag]:
        listing = await hub.run(service.list_tags, who, check_dataset_name(dataset))
        return listing.tags

    @app.get(
        d + "/tags/{tag}",
        summary="a tag's current record (ETag: its seq)",
        response_model=models.Tag,
    )
    async def get_tag(who: Who, dataset: DatasetPath, tag: TagPath) -> Response:
        found = await hub.run(service.get_tag, who, check_dataset_name(dataset), check_tag(tag))
        return _tag_response(found)

    @app.put(
        d + "/tags/{tag}",
        summary="point a tag at a manifest (writer); If-Match on its ETag, or expect_seq",
        response_model=models.Tag,
        responses={409: {"$ref": "#/components/responses/Error"}},
    )
    async def set_tag(
        request: Request, who: Who, dataset: DatasetPath, tag: TagPath, body: models.SetTag
    ) -> Response:
        name, tag = check_dataset_name(dataset), check_tag(tag)
        manifest = ManifestId.from_hex(body.manifest)
        expect = body.expect_seq
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")
        if if_match is not None or if_none_match is not None:
            seq = await hub.run(_current_seq, who, name, tag)
            if not preconditions_hold(if_match, if_none_match, seq):
                raise PreconditionFailed(
                    f"{name}:{tag} is at seq {seq} (ETag {_tag_etag(seq)}), which the request's "
                    "If-Match/If-None-Match refuses: read it again and retry"
                )
            expect = seq if expect is None else expect  # a move from here on is a 409
        result = await hub.run(service.set_tag, who, name, tag, manifest, expect)
        hub.watch.kick(name)
        return _tag_response(result)

    def _current_seq(who: Principal | None, name: str, tag: str) -> int:
        try:
            return service.get_tag(who, name, tag).seq
        except NotFound:
            return 0

    @app.get(d + "/tags/{tag}/history", summary="every record the tag has had, oldest first")
    async def tag_history(who: Who, dataset: DatasetPath, tag: TagPath) -> list[models.Tag]:
        return await hub.run(service.tag_history, who, check_dataset_name(dataset), check_tag(tag))

    async def upload(
        request: Request,
        who: Principal | None,
        name: str,
        limit: int,
        store: Callable[[Principal | None, str, Any, bytes], bool],
        object_id: ManifestId | PackId,
    ) -> bool:
        """A content-addressed upload: the role is checked before a large body is read."""
        await hub.run(service.require, who, name, "write")
        body = await read_body(request, limit)
        return await hub.run(store, who, name, object_id, body)

    @app.get(
        d + "/manifests/{manifest}",
        summary="a sealed manifest (the dataset's)",
        response_class=Response,
        responses={200: {"content": _BINARY}},
    )
    async def get_manifest(who: Who, dataset: DatasetPath, manifest: ManifestPath) -> Response:
        manifest_id = ManifestId.from_hex(manifest)
        stored = await hub.run(service.get_manifest, who, check_dataset_name(dataset), manifest_id)
        return Response(
            stored,
            media_type="application/octet-stream",
            headers={"ETag": f'"{manifest_id.hex()}"', "Cache-Control": _IMMUTABLE},
        )

    @app.put(
        d + "/manifests/{manifest}",
        summary="store a sealed manifest (writer): 201 new, 200 held already",
        response_model=models.ManifestStored,
        responses={201: {"model": models.ManifestStored}},
        openapi_extra=_BINARY_BODY,
    )
    async def put_manifest(
        request: Request, who: Who, dataset: DatasetPath, manifest: ManifestPath
    ) -> Response:
        name, manifest_id = check_dataset_name(dataset), ManifestId.from_hex(manifest)
        created = await upload(
            request, who, name, limits.manifest, service.put_manifest, manifest_id
        )
        reply = models.ManifestStored(manifest=manifest_id.hex(), created=created)
        return JSONResponse(reply.model_dump(), 201 if created else 200)

    @app.get(
        d + "/packs/{pack}",
        summary="a pack the dataset's tagged manifests use (Range: one byte range)",
        response_class=Response,
        responses={200: {"content": _BINARY}, 206: {"content": _BINARY}, 416: {}},
    )
    async def get_pack(
        request: Request, who: Who, dataset: DatasetPath, pack: PackPath
    ) -> Response:
        name, pack_id = check_dataset_name(dataset), PackId.from_hex(pack)
        size = await hub.run(service.pack_size, who, name, pack_id)
        headers = {
            "ETag": f'"{pack_id.hex()}"',
            "Accept-Ranges": "bytes",
            "Cache-Control": _IMMUTABLE,
        }
        try:
            wanted = parse_range(request.headers.get("range"), size)
        except Unsatisfiable:
            return unsatisfiable(size, headers)
        status, start, length = range_reply(wanted, size, headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(length)
            return Response(status_code=status, headers=headers)
        data = await hub.run(service.get_pack_range, who, name, pack_id, start, length)
        return Response(data, status, headers=headers, media_type="application/octet-stream")

    app.add_api_route(
        d + "/packs/{pack}",
        get_pack,
        methods=["HEAD"],
        name="stat_pack",
        summary="a pack's size and ETag (as GET, without the bytes)",
        response_class=Response,
    )

    @app.put(
        d + "/packs/{pack}",
        summary="store a pack (writer), checked against its id: 201 new, 200 held already",
        response_model=models.PackStored,
        responses={201: {"model": models.PackStored}},
        openapi_extra=_BINARY_BODY,
    )
    async def put_pack(
        request: Request, who: Who, dataset: DatasetPath, pack: PackPath
    ) -> Response:
        name, pack_id = check_dataset_name(dataset), PackId.from_hex(pack)
        created = await upload(request, who, name, limits.pack, service.put_pack, pack_id)
        reply = models.PackStored(pack=pack_id.hex(), created=created)
        return JSONResponse(reply.model_dump(), 201 if created else 200)

    @app.get(
        d + "/keys",
        summary="the dataset key (readers) and convergence secret (writers)",
        response_model=models.Keys,
    )
    async def keys(who: Who, dataset: DatasetPath) -> Response:
        found = await hub.run(service.keys, who, check_dataset_name(dataset))
        body = found.model_dump(exclude_none=True)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get(d + "/grants", summary="who may do what on the dataset (dataset admin)")
    async def grants(who: Who, dataset: DatasetPath) -> models.Grants:
        return await hub.run(service.grants, who, check_dataset_name(dataset))

    @app.put(d + "/grants", summary="grant a role, or revoke with null (dataset admin)")
    async def grant(who: Who, dataset: DatasetPath, body: models.SetGrant) -> models.Grants:
        name = check_dataset_name(dataset)
        return await hub.run(service.grant, who, name, body.subject, body.role)

    @app.get(d + "/diff", summary="what changed from tag a to tag b, and what b costs")
    async def diff(
        who: Who, dataset: DatasetPath, a: Annotated[str, Query()], b: Annotated[str, Query()]
    ) -> models.Diff:
        name = check_dataset_name(dataset)
        return await hub.run(service.diff, who, name, check_tag(a), check_tag(b))

    @app.get(
        d + "/watch",
        summary="tag moves as server-sent events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def watch(
        who: Who, dataset: DatasetPath, tag: Annotated[list[str] | None, Query()] = None
    ) -> Response:
        name = check_dataset_name(dataset)
        await hub.run(service.require, who, name, "read")
        tags = frozenset(check_tag(t) for t in tag or ()) or None
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

    # The dataset itself last: its name pattern would not take `/-/...`, but order says so too.
    @app.get("/v1/datasets/{dataset:dataset}", summary="a dataset and its tags")
    async def get_dataset(who: Who, dataset: DatasetPath) -> models.Dataset:
        return await hub.run(service.get_dataset, who, check_dataset_name(dataset))

    @app.delete(
        "/v1/datasets/{dataset:dataset}",
        status_code=204,
        response_class=Response,
        summary="forget a dataset's tags and grants (dataset admin)",
    )
    async def delete_dataset(who: Who, dataset: DatasetPath) -> Response:
        await hub.run(service.delete_dataset, who, check_dataset_name(dataset))
        return Response(status_code=204)

    # Agents, audit, fleet -----------------------------------------------------------------
    @app.get("/v1/agents", summary="every agent's last status report (hub admin)")
    async def agents(who: Who) -> list[models.AgentStatus]:
        return await hub.run(service.fleet, who)

    @app.get("/v1/agents/{agent}/status", summary="an agent's last report (itself or an admin)")
    async def get_status(who: Who, agent: AgentPath) -> models.AgentStatus:
        return await hub.run(service.get_status, who, agent)

    @app.put(
        "/v1/agents/{agent}/status",
        status_code=204,
        response_class=Response,
        summary="an agent reports its status (itself or an admin)",
    )
    async def put_status(who: Who, agent: AgentPath, report: dict[str, Any]) -> Response:
        await hub.run(service.put_status, who, agent, report)
        return Response(status_code=204)

    @app.get("/v1/audit", summary="audit entries of one day, UTC (hub admin)")
    async def audit(
        who: Who, day: DayQuery = None, limit: LimitQuery = "200"
    ) -> list[models.AuditEntry]:
        if not ascii_digits(limit) or not 1 <= int(limit) <= 10_000:
            raise InvalidInput("limit must be a number from 1 to 10000")
        return await hub.run(service.audit_entries, who, day, int(limit))

    @app.get("/v1/fleet", summary="the fleet id and its public key")
    async def fleet() -> models.FleetInfo:
        return await hub.run(service.fleet_info)

    @app.get(
        "/v1/fleet/rollout",
        summary="each subscribed channel's newest versions going live, and their bytes by source",
    )
    async def rollout(who: Who) -> list[models.ChannelRollout]:
        return await hub.run(service.fleet_rollout, who)

    @app.get(
        "/v1/fleet/peers",
        summary="where the other agents of the caller's fleet that reported lately listen "
        "(an agent, or a hub admin naming the fleet)",
    )
    async def peer_hints(who: Who, fleet: FleetQuery = None) -> models.PeerHints:
        return await hub.run(service.peer_hints, who, fleet)

    @app.post("/v1/fleet/join-tokens", status_code=201, summary="a one-use join token (hub admin)")
    async def join_tokens(who: Who, body: models.CreateJoinToken) -> models.JoinToken:
        ttl = 3600 if body.ttl_seconds is None else body.ttl_seconds
        return await hub.run(service.create_join_token, who, float(ttl))

    @app.post(
        "/v1/fleet/enrol",
        status_code=201,
        response_model=models.Enrolled,
        summary="an agent enrols with a join token",
    )
    async def enrol(body: models.Enrol) -> Response:
        public_key = bytes.fromhex(body.public_key)
        issued = await hub.run(service.enrol, body.join_token, body.agent, public_key)
        return JSONResponse(issued.model_dump(), 201, headers={"Cache-Control": "no-store"})

    @app.post(
        "/v1/fleet/renew",
        response_model=models.Renewed,
        summary="an agent renews its certificate (its API token; signed by the certified key)",
    )
    async def renew(who: Who, body: models.Renew) -> Response:
        renewed = await hub.run(service.renew_certificate, who, body.certificate, body.signature)
        return JSONResponse(renewed.model_dump(), headers={"Cache-Control": "no-store"})

    @app.get("/v1/fleet/revocations", summary="the signed revocation list")
    async def revocations(who: Who) -> models.Revocations:
        return await hub.run(service.revocations, who)

    @app.post("/v1/fleet/revocations", summary="revoke certificates by serial or agent (admin)")
    async def revoke(who: Who, body: models.Revoke) -> models.Revoked:
        return await hub.run(service.revoke_certificates, who, body.serial, body.agent)

    app.router.routes.extend(extra_routes or [])
    return Methods(BodyLimit(app, limits), lambda: app.router.routes)


def _tag_response(tag: models.Tag) -> Response:
    return JSONResponse(tag.model_dump(), headers={"ETag": _tag_etag(tag.seq)})
