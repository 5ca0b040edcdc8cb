"""The hub under hostile input: Unicode digits in headers, huge names and paths echoed in
errors, ranges past the end over gRPC, and (in a real hub process) oversized gRPC messages
from callers who never authenticated, and more Watch streams than one principal may hold."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import pytest
import trio

from aetherfs.core.ids import PackId
from aetherfs.errors import ECHO_CHARS
from aetherfs.hub.config import HubConfig, Limits
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.repository import StoreRepository
from aetherfs.store.layout import pack_key
from tests.conftest import Cli
from tests.hub.conftest import HubProcess
from tests.hub.helpers import RunningHub, publish, start_hub
from tests.hub.test_grpc import auth, stub

StartHub = Callable[..., AbstractContextManager[HubProcess]]
SERVICE = "/aetherfs.hub.v1.Hub/"

SUPERSCRIPT_TWO = "\u00b2"  # Latin-1 '²': str.isdigit() says yes, int() says no


def a_pack(repo: StoreRepository, dataset: str, tag: str) -> PackId:
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


async def test_a_range_past_the_end_is_out_of_range_and_logged(
    grpc_hub: RunningHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aetherfs.hub.grpc")
    publish(grpc_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    pack = a_pack(grpc_hub.repo, "team/geo-db", "1.0.0")
    size = len(grpc_hub.repo.store.get(pack_key(pack)))

    def calls() -> None:
        channel, hub = stub(grpc_hub)
        admin = auth(grpc_hub.admin)
        with channel:
            last = hub.GetPackRange(
                pb.PackRange(dataset="team/geo-db", pack=pack.digest, start=size - 1),
                metadata=admin,
            )
            assert len(last.data) == 1
            for start, length in ((size, 0), (size, 10), (2**63, 1), (2**64 - 1, 0)):
                request = pb.PackRange(
                    dataset="team/geo-db", pack=pack.digest, start=start, length=length
                )
                with pytest.raises(grpc.RpcError) as refused:
                    hub.GetPackRange(request, metadata=admin, timeout=10)
                assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE, refused.value

    await trio.to_thread.run_sync(calls)
    logged = [r.getMessage() for r in caplog.records if r.name == "aetherfs.hub.grpc"]
    assert sum("OUT_OF_RANGE" in line for line in logged) == 4, logged


async def test_one_token_cannot_take_every_thread_with_watch_streams(
    grpc_hub: RunningHub, tmp_path: Path
) -> None:
    """66 streams from one reader took all 64 gRPC threads: Info timed out."""
    publish(grpc_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    config = HubConfig()
    reader, other = grpc_hub.token("rita"), grpc_hub.token("otto")
    async with grpc_hub.client(grpc_hub.admin) as c:
        for who in ("user:rita", "user:otto"):
            grant = {"subject": who, "role": "read"}
            assert (await c.put("/v1/datasets/team/geo-db/-/grants", json=grant)).status_code == 200

    def calls() -> None:
        channel, hub = stub(grpc_hub)
        request = pb.WatchRequest(dataset="team/geo-db")
        streams = [
            hub.Watch(request, metadata=auth(reader), timeout=10)
            for _ in range(config.grpc_threads + 2)
        ]
        try:
            opened = 0
            for stream in streams:
                try:
                    assert next(stream).tag == "1.0.0"
                    opened += 1
                except grpc.RpcError as exc:
                    # Without a bound: DEADLINE_EXCEEDED, the streams past the thread count
                    # waited for a thread that never came free.
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                    assert "watch streams" in (exc.details() or "")
            assert opened == config.grpc_watch_per_principal
            started = time.monotonic()
            assert hub.Info(pb.InfoRequest(), timeout=5).signer
            assert time.monotonic() - started < 2
            # Another caller still gets a stream, and unary calls are still served.
            theirs = hub.Watch(request, metadata=auth(other), timeout=30)
            assert next(theirs).tag == "1.0.0"
            theirs.cancel()
            assert hub.Info(pb.InfoRequest(), timeout=5).signer
        finally:
            for stream in streams:
                stream.cancel()
            channel.close()

    await trio.to_thread.run_sync(calls)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_unauthenticated_80_mib_messages_do_not_grow_the_hub(
    cli: Cli, start_hub_process: StartHub, tmp_path: Path
) -> None:
    """Six unauthenticated 80 MiB PutPack calls took a hub from 394 MB to 1,004 MB, for good."""
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    with start_hub_process("--grpc-listen", "127.0.0.1:0") as hub:
        assert hub.process.stdout is not None
        line = hub.process.stdout.readline()
        assert line.startswith("hub gRPC listening on "), line
        address = line.split()[-1]
        data = b"\0" * (80 * 1024 * 1024)
        pack = pb.PutPackRequest(dataset="team/geo-db", pack=PackId.of(data).digest, data=data)
        tag = pb.TagRef(dataset="team/geo-db", tag="t" * (80 * 1024 * 1024))
        big = 100 * 1024 * 1024
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", big)]) as ch:
            assert ch.unary_unary(SERVICE + "Info")(b"", timeout=10) is not None
            before = rss_mib(hub.process.pid)

            def send(method: str, message: bytes) -> grpc.StatusCode:
                try:
                    ch.unary_unary(method)(message, timeout=60)
                except grpc.RpcError as exc:
                    return exc.code()  # type: ignore[no-any-return]
                return grpc.StatusCode.OK

            calls = [(SERVICE + "PutPack", pack.SerializeToString())] * 6
            calls += [(SERVICE + "GetTag", tag.SerializeToString())] * 6
            with ThreadPoolExecutor(12) as pool:
                codes = list(pool.map(lambda call: send(*call), calls))
            after = rss_mib(hub.process.pid)
        refusals = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert set(codes) <= refusals, codes
        assert after - before < 100, (before, after)


async def test_uploads_are_read_only_as_far_as_the_callers_role_and_the_limit_allow(
    nursery: trio.Nursery, repo: StoreRepository, tmp_path: Path
) -> None:
    config = HubConfig(
        listen="127.0.0.1:0", grpc_listen="127.0.0.1:0", limits=Limits(pack=3 * 1024 * 1024)
    )
    running = await start_hub(nursery, repo, config)
    publish(repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    reader = running.token("rita")
    piece = b"\1" * (1024 * 1024)

    def upload(token: str, pieces: int) -> grpc.StatusCode:
        channel, hub = stub(running)

        def requests() -> Iterator[pb.PutPackRequest]:
            yield pb.PutPackRequest(dataset="team/geo-db", pack=b"\2" * 32, data=piece)
            for _ in range(pieces - 1):
                yield pb.PutPackRequest(data=piece)

        with channel:
            try:
                hub.PutPack(requests(), metadata=auth(token), timeout=30)
            except grpc.RpcError as exc:
                return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def calls() -> None:
        assert upload(reader, 2) == grpc.StatusCode.PERMISSION_DENIED
        assert upload(running.admin, 5) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Over the message limit in one piece: refused by grpcio as it arrives.
        channel, hub = stub(running)
        with channel:
            whole = pb.PutPackRequest(dataset="team/geo-db", pack=b"\2" * 32, data=piece * 3)
            with pytest.raises(grpc.RpcError) as refused:
                hub.PutPack(iter([whole]), metadata=auth(running.admin), timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    try:
        await trio.to_thread.run_sync(calls)
    finally:
        running.cancel.cancel()
