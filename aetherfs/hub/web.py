"""Server-rendered web pages and the HTTP file server of the hub.

Pages: datasets, a dataset's tags and each tag's history, a version's files (the file
server's listings), the diff between two versions, and the fleet (with each channel's
rollout drawn as inline SVG, `rollout_chart.py`). Browsers log in by pasting
an API token (or an OIDC token) into /ui/login, which sets an HttpOnly, SameSite=Strict
cookie; the cookie is honoured on GET pages and files only, never by the REST API.

The HTML comes from Jinja2 templates (aetherfs/hub/templates, package data) with autoescaping
on, rendered through Starlette's Jinja2Templates: no page assembles HTML from strings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, quote

import cachetools
import humanize
import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from aetherfs.core.blocks import BlockRef, open_block
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.errors import AetherError, Forbidden, InvalidInput
from aetherfs.http import files
from aetherfs.hub import rollout_chart
from aetherfs.hub.app import COOKIE, Hub, read_body
from aetherfs.hub.auth import Principal
from aetherfs.hub.errors import Unauthenticated
from aetherfs.hub.versions import BlockLru, ManifestTree

TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.PackageLoader("aetherfs.hub", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
)


def human_bytes(n: float) -> str:
    """`512 Bytes`, `1.5 MiB`: binary units, one decimal."""
    return humanize.naturalsize(n, binary=True)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


TEMPLATES.env.filters.update(
    when=when, bytes=human_bytes, urlpath=lambda text: quote(str(text)), urlquery=quote
)


def page(
    request: Request,
    template: str,
    title: str,
    who: Principal | None,
    status: int = 200,
    **context: Any,
) -> Response:
    return TEMPLATES.TemplateResponse(
        request, template, {"title": title, "who": who, **context}, status_code=status
    )


def banner(who: Principal | None) -> str:
    """The header bar, for the file server's listings (which are not templates of ours)."""
    return TEMPLATES.get_template("banner.html").render(who=who)


def style() -> str:
    return TEMPLATES.get_template("style.css").render()


class TreeCache:
    """Recently opened versions, by manifest id (immutable, so never stale); thread-safe."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._trees: cachetools.LRUCache[ManifestId, ManifestTree] = cachetools.LRUCache(size)
        self._lock = threading.Lock()  # the file server opens versions in worker threads

    def get(self, manifest_id: ManifestId) -> ManifestTree | None:
        with self._lock:
            return self._trees.get(manifest_id)

    def put(self, tree: ManifestTree) -> None:
        with self._lock:
            self._trees[tree.manifest_id] = tree


def web_routes(hub: Hub) -> list[BaseRoute]:
    service = hub.service
    repo = hub.repo

    def read_blocks(dataset: str, refs: Sequence[BlockRef]) -> dict[BlockId, bytes]:
        stored = repo.get_blocks(dataset, refs)  # ranged reads of packs, each block verified
        return {ref.id: open_block(ref, stored[ref.id]) for ref in refs}

    blocks = BlockLru(read_blocks)
    trees = TreeCache()

    async def principal(request: Request) -> Principal | None:
        return await hub.principal(request, cookie=True)

    async def error_page(request: Request, exc: AetherError, who: Principal | None) -> Response:
        status = exc.http_status
        if status == 401:
            return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", 303)
        return page(request, "error.html", "Not available", who, status, message=str(exc))

    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/", 302)

    async def datasets(request: Request) -> Response:
        who = await principal(request)
        found = await hub.run(service.list_datasets, who)
        return page(request, "datasets.html", "Datasets", who, datasets=found)

    async def dataset(request: Request) -> Response:
        who = await principal(request)
        rest = request.path_params["rest"]
        name, _, sub = rest.partition("/-/")
        try:
            check_dataset_name(name)
            if sub.startswith("history/"):
                return await history(request, who, name, check_tag(sub[len("history/") :]))
            if sub == "diff":
                return await diff(request, who, name)
            if sub:
                raise InvalidInput("no such page")
            info = await hub.run(service.get_dataset, who, name)
        except AetherError as exc:
            return await error_page(request, exc, who)
        return page(request, "dataset.html", name, who, info=info)

    async def history(request: Request, who: Principal | None, name: str, tag: str) -> Response:
        records = await hub.run(service.tag_history, who, name, tag)
        return page(
            request, "history.html", f"{name}:{tag} history", who, name=name, records=records
        )

    async def diff(request: Request, who: Principal | None, name: str) -> Response:
        a = check_tag(request.query_params.get("a", ""))
        b = check_tag(request.query_params.get("b", ""))
        result = await hub.run(service.diff, who, name, a, b)
        title = f"{name}: {a} → {b}"
        return page(request, "diff.html", title, who, name=name, a=a, b=b, result=result)

    async def fleet(request: Request) -> Response:
        who = await principal(request)
        try:
            agents = await hub.run(service.fleet, who)
            rollouts = await hub.run(service.fleet_rollout, who)
        except AetherError as exc:
            return await error_page(request, exc, who)
        agents = sorted(agents, key=lambda a: a.agent)
        charts = [rollout_chart.chart(r) for r in rollouts]
        return page(request, "fleet.html", "Fleet", who, agents=agents, charts=charts)

    async def login(request: Request) -> Response:
        target = request.query_params.get("next", "/ui/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/ui/"  # never redirect off this hub
        if request.method == "POST":
            form = parse_qs((await read_body(request, 16 * 1024)).decode("utf-8", "replace"))
            token = (form.get("token") or [""])[0].strip()
            try:
                who = await hub.auth.authenticate(token or None)
                if who is None:
                    raise Unauthenticated("paste a token")
            except AetherError as exc:
                return page(request, "login.html", "Log in", None, 401, target=target, error=exc)
            response = RedirectResponse(target, 303)
            response.set_cookie(
                COOKIE,
                token,
                httponly=True,
                samesite="strict",
                secure=hub.config.tls_cert is not None,
                max_age=8 * 3600,
            )
            return response
        return page(request, "login.html", "Log in", None, target=target, error="")

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/ui/", 303)
        response.delete_cookie(COOKIE)
        return response

    def open_version(who: Principal | None, name: str, tag: str) -> ManifestTree:
        manifest, manifest_id = service.version(who, name, tag)
        tree = trees.get(manifest_id)
        if tree is None:
            tree = ManifestTree(manifest, manifest_id, blocks)
            trees.put(tree)
        return tree

    def resolve(who: Principal | None, segments: list[str]) -> tuple[str, str, str]:
        """NAME/TAG/PATH: the longest prefix naming a dataset the caller may read."""
        for i in range(len(segments) - 1, 0, -1):
            name = "/".join(segments[:i])
            try:
                check_dataset_name(name)
            except InvalidInput:
                continue
            if service.acls.allowed(who, name, "read") and service.dataset_exists(
                name, cached=True
            ):
                return name, segments[i], "/".join(segments[i + 1 :])
        if who is None:
            raise Unauthenticated("authentication required: send `Authorization: Bearer TOKEN`")
        raise Forbidden("not allowed, or no such dataset: ask an admin of the dataset for read")

    async def serve_file(request: Request) -> Response:
        who = await principal(request)
        rest = request.path_params["rest"]
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = files.check_url_path(raw, rest)

        def find() -> tuple[str, str, str, ManifestTree]:
            name, tag, sub = resolve(who, path.split("/"))
            return name, tag, sub, open_version(who, name, check_tag(tag))

        name, tag, sub, tree = await hub.run(find)  # one trip to a worker thread
        return await files.serve_path(
            request,
            tree,
            sub,
            hub.limiter,
            title=lambda p: f"{name}:{tag}/{p}",
            head=f"<style>{style()}</style>",
            banner=banner(who),
        )

    return [
        Route("/", home, methods=["GET"]),
        Route("/ui/", datasets, methods=["GET"]),
        Route("/ui/fleet", fleet, methods=["GET"]),
        Route("/ui/login", login, methods=["GET", "POST"]),
        Route("/ui/logout", logout, methods=["GET"]),
        Route("/ui/d/{rest:path}", dataset, methods=["GET"]),
        Route("/files/{rest:path}", serve_file, methods=["GET", "HEAD"]),
    ]
