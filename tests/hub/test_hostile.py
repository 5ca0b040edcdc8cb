"""The hub under hostile input: Unicode digits in headers, huge names and paths echoed in
errors, ranges past the end over gRPC, and (in a real hub process) oversized gRPC messages
from callers who never authenticated, and more Watch streams than one principal may hold."""

from __future__ import annotations

from pathlib import Path

import grpc
import trio

from aetherfs.core.ids import PackId
from aetherfs.errors import ECHO_CHARS
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.repo import Repository
from tests.hub.helpers import RunningHub, publish
from tests.hub.test_grpc import auth, grpc_hub, stub

__all__ = ["grpc_hub"]  # the fixture, shared with test_grpc

SUPERSCRIPT_TWO = "\u00b2"  # Latin-1 '²': str.isdigit() says yes, int() says no


def a_pack(repo: Repository, dataset: str, tag: str) -> PackId:
    manifest = repo.get_manifest(dataset, repo.resolve(dataset, tag).record.manifest_id)
    return min(ref.pack for ref in manifest.unique_blocks().values() if ref.pack is not None)


async def test_unicode_digits_in_a_range_are_ignored_not_a_500(
    hub: RunningHub, tmp_path: Path
) -> None:
    publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    pack = a_pack(hub.repo, "team/geo-db", "1.0.0")
    urls = ["/files/team/geo-db/1.0.0/README", f"/v1/datasets/team/geo-db/-/packs/{pack.hex()}"]
    async with hub.client(hub.admin) as c:
        for url in urls:
            whole = await c.get(url)
            assert whole.status_code == 200
            for spec in (
                f"bytes={SUPERSCRIPT_TWO}-",
                f"bytes=0-{SUPERSCRIPT_TWO}",
                "bytes=-\u00b9",
            ):
                # httpx sends str headers as ASCII; bytes go out as they are (Latin-1 on the wire).
                r = await c.get(url, headers={"Range": spec.encode("latin-1")})
                assert r.status_code == 200, (url, spec, r.text[:200])
                assert r.content == whole.content
        audit = await c.get("/v1/audit", params={"limit": SUPERSCRIPT_TWO})
        assert audit.status_code == 400


async def test_errors_echo_only_a_bounded_part_of_the_input(
    hub: RunningHub, tmp_path: Path
) -> None:
    publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    long_path = "x" * 20_000
    async with hub.client(hub.admin) as c:
        for url in (
            f"/files/team/geo-db/1.0.0/{long_path}",
            f"/v1/datasets/team/geo-db/-/{long_path}",
            f"/v1/datasets/{long_path}",
            f"/v1/datasets/team/geo-db/-/tags/{long_path}",
            f"/v1/datasets/team/geo-db/-/manifests/{long_path}",
        ):
            r = await c.get(url)
            assert 400 <= r.status_code < 500, url
            assert len(r.content) < 2 * ECHO_CHARS + 300, (url, r.content[:300])
            assert "characters)" in r.text, r.text


async def test_grpc_errors_echo_only_a_bounded_part_of_the_input(grpc_hub: RunningHub) -> None:
    await trio.to_thread.run_sync(errors_echo_bounded, grpc_hub)


def errors_echo_bounded(grpc_hub: RunningHub) -> None:
    channel, hub = stub(grpc_hub)
    admin = auth(grpc_hub.admin)
    with channel:
        for call, request in (
            (hub.CreateDataset, pb.DatasetRef(dataset="a" * 100_000)),
            (hub.GetTag, pb.TagRef(dataset="team/geo-db", tag="t" * 100_000)),
            (hub.GetStatus, pb.AgentRef(agent="g" * 100_000)),
        ):
            try:
                call(request, metadata=admin, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.NOT_FOUND,
                ), exc
                assert len(exc.details() or "") < 2 * ECHO_CHARS + 300
            else:
                raise AssertionError("a 100 KB name was accepted")
