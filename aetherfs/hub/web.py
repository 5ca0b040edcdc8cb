"""Server-rendered web pages and the HTTP file server of the hub.

Pages: datasets, a dataset's tags and each tag's history, a version's files (the file
server's listings), the diff between two versions, and the fleet. Browsers log in by pasting
an API token (or an OIDC token) into /ui/login, which sets an HttpOnly, SameSite=Strict
cookie; the cookie is honoured on GET pages and files only, never by the REST API.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, quote

import cachetools
import humanize
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from aetherfs.core.blocks import BlockRef, open_block
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.errors import AetherError, Forbidden, InvalidInput
from aetherfs.http import files
from aetherfs.hub.app import COOKIE, Hub, error_status, read_body
from aetherfs.hub.auth import Principal
from aetherfs.hub.errors import Unauthenticated
from aetherfs.hub.versions import BlockLru, ManifestTree

CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
header{background:#14213d;color:#fff;padding:.7rem 1.5rem;display:flex;gap:1.5rem;
align-items:center}
header a{color:#fca311;text-decoration:none;font-weight:600}
header .who{margin-left:auto;color:#cfd6e4;font-size:13px}
main{padding:1.2rem 1.5rem;max-width:1100px}
h1{font-size:22px;margin:.2rem 0 1rem}
h2{font-size:17px;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;min-width:50%}
th,td{padding:.4rem .8rem;border-bottom:1px solid #e5e8ee;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600;font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:13px ui-monospace,monospace;background:#eef1f6;padding:0 .25rem;border-radius:3px}
.added{color:#1b7f3b}.removed{color:#b3261e}.changed{color:#8a5a00}
.note{color:#5a6478;font-size:13px}
form.inline{display:flex;gap:.5rem;align-items:center}
input,select,button{font:inherit;padding:.3rem .5rem}
"""


def human_bytes(n: float) -> str:
    """`512 Bytes`, `1.5 MiB`: binary units, one decimal."""
    return humanize.naturalsize(n, binary=True)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def e(text: object) -> str:
    return html.escape(str(text))


def banner(who: Principal | None) -> str:
    user = (
        f"{e(who.subject)} &middot; <a href='/ui/logout'>log out</a>"
        if who
        else "<a href='/ui/login'>log in</a>"
    )
    return (
        "<header><a href='/ui/'>AetherFS hub</a><a href='/ui/'>datasets</a>"
        f"<a href='/ui/fleet'>fleet</a><span class='who'>{user}</span></header>"
    )


def page(title: str, body: str, who: Principal | None, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(title)} &middot; AetherFS hub</title><style>{CSS}</style></head><body>"
        f"{banner(who)}<main><h1>{e(title)}</h1>{body}</main></body></html>",
        status,
    )


def table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{cell}</td>" if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def dataset_href(name: str) -> str:
    return f"/ui/d/{quote(name)}"


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

    def read_blocks(refs: Sequence[BlockRef]) -> dict[BlockId, bytes]:
        stored = repo.get_blocks(refs)  # ranged reads of packs, each block verified
        return {ref.id: open_block(ref, stored[ref.id]) for ref in refs}

    blocks = BlockLru(read_blocks)
    trees = TreeCache()

    async def principal(request: Request) -> Principal | None:
        return await hub.principal(request, cookie=True)

    async def error_page(request: Request, exc: AetherError, who: Principal | None) -> Response:
        status, _ = error_status(exc)
        if status == 401:
            return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", 303)
        return page("Not available", f"<p>{e(exc)}</p>", who, status)

    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/", 302)

    async def datasets(request: Request) -> Response:
        who = await principal(request)
        found = await hub.run(service.list_datasets, who)
        rows = [
            [
                f"<a href='{dataset_href(d['name'])}'>{e(d['name'])}</a>",
                " ".join(
                    f"<a href='/files/{quote(d['name'])}/{quote(t)}/'><code>{e(t)}</code></a>"
                    for t in d["tags"]
                ),
                e(when(d["updated"])),
            ]
            for d in found
        ]
        body = (
            table(["dataset", "tags", "updated"], rows)
            if rows
            else (
                "<p class='note'>No dataset you may read. "
                + ("Log in to see more." if who is None else "Ask an admin for a grant.")
                + "</p>"
            )
        )
        return page("Datasets", body, who)

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
        tags = info["tags"]
        rows = [
            [
                f"<code>{e(t)}</code>",
                f"<code>{e(doc['manifest'][:12])}</code>",
                e(doc["seq"]),
                e(when(doc["time"])),
                f"<a href='/files/{quote(name)}/{quote(t)}/'>files</a> &middot; "
                f"<a href='{dataset_href(name)}/-/history/{quote(t)}'>history</a>",
            ]
            for t, doc in tags.items()
        ]
        options = "".join(f"<option>{e(t)}</option>" for t in tags)
        names = list(tags)
        second = "".join(
            f"<option{' selected' if i == len(names) - 1 else ''}>{e(t)}</option>"
            for i, t in enumerate(names)
        )
        body = (
            f"<p class='note'>created {e(when(info['created']))}</p><h2>Tags</h2>"
            + table(["tag", "manifest", "seq", "set", ""], rows, {2})
            + f"<h2>Compare two versions</h2><form class='inline' method='get' "
            f"action='{dataset_href(name)}/-/diff'><select name='a'>{options}</select> &rarr; "
            f"<select name='b'>{second}</select><button>diff</button></form>"
        )
        return page(name, body, who)

    async def history(request: Request, who: Principal | None, name: str, tag: str) -> Response:
        records = await hub.run(service.tag_history, who, name, tag)
        rows = [
            [
                e(r["seq"]),
                f"<code>{e(r['manifest'][:12])}</code>",
                e(when(r["time"])),
                f"<code>{e(r['signer'][:16])}</code>",
            ]
            for r in reversed(records)
        ]
        body = f"<p><a href='{dataset_href(name)}'>&larr; {e(name)}</a></p>" + table(
            ["seq", "manifest", "set", "signer"], rows, {0}
        )
        return page(f"{name}:{tag} history", body, who)

    async def diff(request: Request, who: Principal | None, name: str) -> Response:
        a = check_tag(request.query_params.get("a", ""))
        b = check_tag(request.query_params.get("b", ""))
        result = await hub.run(service.diff, who, name, a, b)
        rows = [
            [
                f"<span class='{e(c['change'])}'>{e(c['change'])}</span>",
                f"<code>{e(c['path'])}</code>",
                e(human_bytes(c["old_size"])),
                e(human_bytes(c["new_size"])),
                e(human_bytes(c["new_bytes"])),
            ]
            for c in result["changes"]
        ]
        summary = (
            f"<p>A holder of <code>{e(a)}</code> fetches <b>{result['blocks_to_fetch']}</b> "
            f"blocks, <b>{e(human_bytes(result['bytes_to_fetch']))}</b> of "
            f"{e(human_bytes(result['total_stored_bytes']))} stored "
            f"({result['saving']:.1%} saved by blocks it already holds).</p>"
        )
        body = (
            f"<p><a href='{dataset_href(name)}'>&larr; {e(name)}</a></p>"
            + summary
            + (
                table(["change", "path", "old size", "new size", "to fetch"], rows, {2, 3, 4})
                if rows
                else "<p>No file changed.</p>"
            )
        )
        return page(f"{name}: {a} → {b}", body, who)

    async def fleet(request: Request) -> Response:
        who = await principal(request)
        try:
            agents = await hub.run(service.fleet, who)
        except AetherError as exc:
            return await error_page(request, exc, who)
        rows = []
        for agent in sorted(agents, key=lambda a: str(a["agent"])):
            report: dict[str, Any] = agent.get("report", {})
            live = report.get("datasets", {})
            versions = (
                "<br>".join(
                    f"<code>{e(d)}</code>:<code>{e(v.get('tag', '?'))}</code> "
                    f"<span class='note'>{e(str(v.get('manifest', ''))[:12])}"
                    f"{' · ' + e(v['progress']) if 'progress' in v else ''}</span>"
                    for d, v in sorted(live.items())
                    if isinstance(v, dict)
                )
                if isinstance(live, dict)
                else ""
            )
            rows.append(
                [
                    f"<code>{e(agent['agent'])}</code>",
                    e(report.get("site", "")),
                    versions,
                    e(when(agent.get("received"))),
                ]
            )
        body = (
            table(["agent", "site", "live versions", "last report"], rows)
            if rows
            else ("<p class='note'>No agent has reported yet.</p>")
        )
        return page("Fleet", body, who)

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
                return page("Log in", _login_form(target, str(exc)), None, 401)
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
        return page("Log in", _login_form(target, ""), None)

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
            head=f"<style>{CSS}</style>",
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


def _login_form(target: str, error: str) -> str:
    message = f"<p class='removed'>{e(error)}</p>" if error else ""
    return (
        f"{message}<form method='post' action='/ui/login?next={quote(target)}' class='inline'>"
        "<input type='password' name='token' id='token' size='48' "
        "placeholder='API token (afs_...) or OIDC token' autocomplete='off'>"
        "<button id='login'>log in</button></form>"
        "<p class='note'>Make a token with <code>aetherfs hub token create --name NAME</code>.</p>"
    )
