"""The REST contract against a real hub: router errors in the JSON envelope, `Allow` on 405 and
OPTIONS, `If-Match` on tags (412), refused `ttl_seconds: 0`, multi-segment dataset names, and a
generated OpenAPI document whose name schemas agree with aetherfs/core/names.py."""

from __future__ import annotations

import re
from pathlib import Path

from aetherfs.core.names import check_tag
from aetherfs.errors import InvalidInput
from tests.hub.helpers import RunningHub, publish


async def test_router_errors_are_json_and_say_which_methods(
    hub: RunningHub, tmp_path: Path
) -> None:
    publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    tag = "/v1/datasets/team/geo-db/-/tags/stable"
    async with hub.client(hub.admin) as c:
        for missing in ("/v1/nope", "/v1/datasets/team/geo-db/-/nope", "/v1"):
            r = await c.get(missing)
            assert r.status_code == 404, missing
            assert r.json()["error"]["code"] == "not_found", missing  # was text/plain

        r = await c.delete("/v1/info")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert r.headers["allow"] == "GET, HEAD, OPTIONS"
        r = await c.post(tag)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, OPTIONS, PUT"

        # OPTIONS lists what each resource has, not every method of every dataset path.
        r = await c.options(tag)
        assert r.status_code == 204 and r.headers["allow"] == "GET, HEAD, OPTIONS, PUT"
        r = await c.options("/v1/datasets/team/geo-db/-/keys")
        assert r.headers["allow"] == "GET, HEAD, OPTIONS"
        r = await c.options("/v1/datasets/team/geo-db")
        assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
        r = await c.options("/v1/datasets/team/geo-db/-/packs/" + "ab" * 32)
        assert r.headers["allow"] == "GET, HEAD, OPTIONS, PUT"
        assert (await c.options("/v1/nope")).status_code == 404

        head = await c.head("/v1/info")
        assert head.status_code == 200 and head.content == b""


async def test_if_match_on_a_tag(hub: RunningHub, tmp_path: Path) -> None:
    v1 = publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0", "stable"])
    v2 = publish(hub.repo, tmp_path / "v2", "team/geo-db", ["2.0.0"], seed=2)
    url = "/v1/datasets/team/geo-db/-/tags/stable"
    async with hub.client(hub.admin) as c:
        got = await c.get(url)
        assert got.json()["manifest"] == v1.manifest_id.hex()
        etag = got.headers["etag"]
        assert etag == f'"{got.json()["seq"]}"'
        move = {"manifest": v2.manifest_id.hex()}
        for stale in ('"999"', 'W/"1"', '"0"'):
            r = await c.put(url, json=move, headers={"If-Match": stale})
            assert r.status_code == 412, stale  # it was ignored, and the tag moved
            assert r.json()["error"]["code"] == "precondition_failed"
        assert (await c.get(url)).json()["manifest"] == v1.manifest_id.hex()
        r = await c.put(url, json=move, headers={"If-None-Match": "*"})
        assert r.status_code == 412  # it exists
        r = await c.put(url, json=move, headers={"If-Match": etag})
        assert r.status_code == 200 and r.json()["manifest"] == v2.manifest_id.hex()
        assert r.headers["etag"] == f'"{r.json()["seq"]}"' != etag
        fresh = "/v1/datasets/team/geo-db/-/tags/canary"
        assert (await c.put(fresh, json=move, headers={"If-Match": "*"})).status_code == 412
        r = await c.put(fresh, json=move, headers={"If-None-Match": "*"})
        assert r.status_code == 200 and r.json()["seq"] == 1


async def test_join_token_ttl_is_checked(hub: RunningHub) -> None:
    async with hub.client(hub.admin) as c:
        for bad in (0, -5, "600", True, 1e12, 600.5):
            r = await c.post("/v1/fleet/join-tokens", json={"ttl_seconds": bad})
            assert r.status_code == 400, bad  # 0 used to mean "the default" silently
            assert "ttl_seconds" in r.json()["error"]["message"]
        for good in (600, 600.0, None):
            r = await c.post("/v1/fleet/join-tokens", json={"ttl_seconds": good})
            assert r.status_code == 201, good


async def test_dataset_names_of_several_segments(hub: RunningHub, tmp_path: Path) -> None:
    name = "org/team/geo-db"
    pushed = publish(hub.repo, tmp_path / "v1", name, ["1.0.0", "stable"])
    async with hub.client(hub.admin) as c:
        assert (await c.get(f"/v1/datasets/{name}")).json()["name"] == name
        tags = (await c.get(f"/v1/datasets/{name}/-/tags")).json()
        assert tags["stable"]["manifest"] == pushed.manifest_id.hex()
        got = await c.get(f"/v1/datasets/{name}/-/tags/stable/history")
        assert [r["dataset"] for r in got.json()] == [name]
        # A name that is a prefix of another's path is its own dataset, not the other's.
        assert (await c.get("/v1/datasets/org/team/-/tags")).status_code == 404


async def test_the_document_is_generated_and_agrees_with_names(hub: RunningHub) -> None:
    async with hub.client() as c:
        doc = (await c.get("/v1/openapi.json")).json()
    paths = doc["paths"]
    assert "/v1/datasets/{dataset}/-/tags/{tag}" in paths
    put = paths["/v1/datasets/{dataset}/-/tags/{tag}"]["put"]
    body = put["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SetTag"}
    assert "422" not in put["responses"] and "default" in put["responses"]
    tag = next(p for p in put["parameters"] if p["name"] == "tag")["schema"]
    dataset = next(p for p in put["parameters"] if p["name"] == "dataset")["schema"]
    assert re.fullmatch(dataset["pattern"], "org/team/geo-db")
    assert not re.search(dataset["pattern"], "team/-/x")
    samples = [
        "1.0.0",
        "1.4.2-rc.1",
        "2026.11.24",
        "2026.11.24.1",
        "2026.11.32",  # the old document's SemVer alternative took it as major 2026
        "2026.02.30",
        "2026.13.01",
        "0000.01.01",
        "2026.1.1",
        "01.2.3",
        "stable",
        "v1.0.0",
        "v1",
        "latest",
        "1.2",
        "a" * 129,
    ]

    def allowed(text: str) -> bool:
        return any(
            re.search(alt["pattern"], text)
            and not ("not" in alt and re.search(alt["not"]["pattern"], text))
            for alt in tag["anyOf"]
        )

    def accepted_by_names(text: str) -> bool:
        try:
            return check_tag(text) == text
        except InvalidInput:
            return False

    # Nothing the document allows is refused by the server (names.py is the one source).
    assert [t for t in samples if allowed(t) and not accepted_by_names(t)] == []
    for refused in ("2026.11.32", "2026.13.01", "1.2", "01.2.3", "v1.0.0"):
        assert not allowed(refused), refused
    for accepted in ("1.0.0", "1.4.2-rc.1", "2026.11.24", "2026.11.24.1", "stable"):
        assert allowed(accepted) and check_tag(accepted), accepted


async def test_pages_escape_what_callers_sent(hub: RunningHub, tmp_path: Path) -> None:
    """Templates autoescape: an agent's report cannot put markup on the fleet page."""
    hostile = "<img src=x onerror=alert(1)>"
    token = hub.token("edge-1", kind="agent")
    report = {"site": hostile, "datasets": {"team/x": {"tag": hostile, "manifest": hostile}}}
    async with hub.client(token) as agent:
        assert (await agent.put("/v1/agents/edge-1/status", json=report)).status_code == 204
    async with hub.client(hub.admin) as c:
        page = await c.get("/ui/fleet")
        assert page.status_code == 200 and "edge-1" in page.text
        assert "<img" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
        login = await c.post(
            "/ui/login?next=/ui/%22%3E%3Cscript%3E",
            content=b"token=afs_%3Cscript%3E",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 401 and "<script>" not in login.text
