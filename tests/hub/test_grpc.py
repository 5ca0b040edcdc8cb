"""The gRPC service with the real grpcio client against a hub in the test's nursery."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import grpc
import trio

from aetherfs.core.blocks import verify_block
from aetherfs.core.ids import PackId
from aetherfs.core.tags import SignedTag
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.hub.grpc_gen import hub_pb2_grpc as pb_grpc
from tests.hub.helpers import RunningHub, publish


def stub(hub: RunningHub) -> tuple[grpc.Channel, pb_grpc.HubStub]:
    assert hub.addresses.grpc is not None
    channel = grpc.insecure_channel(hub.addresses.grpc)
    return channel, pb_grpc.HubStub(channel)  # type: ignore[no-untyped-call]


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def test_grpc_operations_and_errors(grpc_hub: RunningHub, tmp_path: Path) -> None:
    v1 = publish(grpc_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    reader = grpc_hub.token("rita")
    admin = auth(grpc_hub.admin)

    def calls() -> None:
        channel, hub = stub(grpc_hub)
        with channel:
            info = hub.Info(pb.InfoRequest())
            assert info.signer == grpc_hub.repo.keyring.signer_public
            assert hub.WhoAmI(pb.WhoAmIRequest(), metadata=admin).subject == "user:root"
            hub.CreateDataset(pb.DatasetRef(dataset="team/new"), metadata=admin)
            names = [
                d.name for d in hub.ListDatasets(pb.ListDatasetsRequest(), metadata=admin).datasets
            ]
            assert names == ["team/geo-db", "team/new"]
            tag = hub.SetTag(
                pb.SetTagRequest(
                    dataset="team/geo-db",
                    tag="stable",
                    manifest=v1.manifest_id.digest,
                    expect_seq=0,
                ),
                metadata=admin,
            )
            assert tag.seq == 1
            SignedTag.verify(tag.signed, grpc_hub.repo.keyring.trusted)
            blob = hub.GetManifest(
                pb.ManifestRef(dataset="team/geo-db", manifest=v1.manifest_id.digest),
                metadata=admin,
            )
            assert len(blob.data) > 0
            # Uploads are streams of pieces: the first names the dataset and the id.
            half = len(blob.data) // 2
            again = hub.PutManifest(
                iter(
                    [
                        pb.PutManifestRequest(
                            dataset="team/geo-db",
                            manifest=v1.manifest_id.digest,
                            stored=blob.data[:half],
                        ),
                        pb.PutManifestRequest(stored=blob.data[half:]),
                    ]
                ),
                metadata=admin,
            )
            assert again.created is False
            history = hub.TagHistory(pb.TagRef(dataset="team/geo-db", tag="stable"), metadata=admin)
            assert [t.seq for t in history.tags] == [1]
            keys = hub.GetKeys(pb.DatasetRef(dataset="team/geo-db"), metadata=admin)
            assert keys.convergence_secret == grpc_hub.repo.keyring.convergence_secret

            def code(
                fn: object, request: object, metadata: list[tuple[str, str]] | None
            ) -> grpc.StatusCode:
                try:
                    fn(request, metadata=metadata)  # type: ignore[operator]
                except grpc.RpcError as exc:
                    return exc.code()
                raise AssertionError("the call succeeded")

            ref = pb.TagRef(dataset="team/geo-db", tag="stable")
            assert code(hub.GetTag, ref, None) == grpc.StatusCode.UNAUTHENTICATED
            assert code(hub.GetTag, ref, auth("afs_forged")) == grpc.StatusCode.UNAUTHENTICATED
            assert code(hub.GetTag, ref, auth(reader)) == grpc.StatusCode.PERMISSION_DENIED
            race = pb.SetTagRequest(
                dataset="team/geo-db", tag="stable", manifest=v1.manifest_id.digest, expect_seq=0
            )
            assert code(hub.SetTag, race, admin) == grpc.StatusCode.ABORTED
            bad = pb.SetTagRequest(dataset="team/geo-db", tag="stable", manifest=b"short")
            assert code(hub.SetTag, bad, admin) == grpc.StatusCode.INVALID_ARGUMENT
            wrong = pb.PutManifestRequest(
                dataset="team/geo-db", manifest=b"\x01" * 32, stored=blob.data
            )
            assert code(hub.PutManifest, iter([wrong]), admin) == (
                grpc.StatusCode.FAILED_PRECONDITION
            )
            status = pb.StatusReport(agent="edge-1", report_json="[1]")
            assert code(hub.PutStatus, status, admin) == grpc.StatusCode.INVALID_ARGUMENT
            hub.PutStatus(pb.StatusReport(agent="edge-1", report_json='{"ok": 1}'), metadata=admin)
            got = hub.GetStatus(pb.AgentRef(agent="edge-1"), metadata=admin)
            assert json.loads(got.report_json) == {"ok": 1}

    await trio.to_thread.run_sync(calls)


async def test_grpc_malformed_protobuf_is_refused(grpc_hub: RunningHub) -> None:
    def call() -> grpc.StatusCode:
        assert grpc_hub.addresses.grpc is not None
        with grpc.insecure_channel(grpc_hub.addresses.grpc) as channel:
            raw = channel.unary_unary("/aetherfs.hub.v1.Hub/GetTag", None, None)
            try:
                raw(b"\xff\xff\xff\xff garbage", metadata=tuple(auth(grpc_hub.admin)))
            except grpc.RpcError as exc:
                return exc.code()
        raise AssertionError("garbage was accepted")

    assert await trio.to_thread.run_sync(call) == grpc.StatusCode.INTERNAL


async def test_grpc_watch_streams_moves(grpc_hub: RunningHub, tmp_path: Path) -> None:
    v1 = publish(grpc_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0", "stable"])
    v2 = publish(grpc_hub.repo, tmp_path / "v2", "team/geo-db", ["1.1.0"], seed=2)
    events: queue.Queue[pb.TagEvent] = queue.Queue()
    channel, hub = stub(grpc_hub)
    stream = hub.Watch(
        pb.WatchRequest(dataset="team/geo-db", tags=["stable"]), metadata=auth(grpc_hub.admin)
    )

    def consume() -> None:
        try:
            for event in stream:
                events.put(event)
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        first = await trio.to_thread.run_sync(events.get, True, 10)
        assert (first.tag, first.seq, first.manifest) == ("stable", 1, v1.manifest_id.digest)
        await trio.to_thread.run_sync(
            grpc_hub.repo.set_tag, "team/geo-db", "stable", v2.manifest_id
        )
        moved = await trio.to_thread.run_sync(events.get, True, 10)
        assert (moved.seq, moved.manifest) == (2, v2.manifest_id.digest)
    finally:
        stream.cancel()
        await trio.to_thread.run_sync(reader.join, 5)
        channel.close()


async def test_grpc_packs(grpc_hub: RunningHub, tmp_path: Path) -> None:
    v1 = publish(grpc_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    manifest = grpc_hub.repo.get_manifest("team/geo-db", v1.manifest_id)
    ref = next(iter(manifest.unique_blocks().values()))
    assert ref.pack is not None
    pack = ref.pack
    admin = auth(grpc_hub.admin)

    def calls() -> None:
        channel, hub = stub(grpc_hub)
        with channel:
            info = hub.StatPack(pb.PackRef(dataset="team/geo-db", pack=pack.digest), metadata=admin)
            assert info.present and info.size >= ref.offset + ref.stored_size
            missing = hub.StatPack(
                pb.PackRef(dataset="team/geo-db", pack=b"\0" * 32), metadata=admin
            )
            assert not missing.present
            blob = hub.GetPackRange(
                pb.PackRange(
                    dataset="team/geo-db",
                    pack=pack.digest,
                    start=ref.offset,
                    length=ref.stored_size,
                ),
                metadata=admin,
            )
            verify_block(ref.id, blob.data)
            data = b"some pack bytes"
            try:
                hub.PutPack(
                    iter([pb.PutPackRequest(dataset="team/geo-db", pack=b"\1" * 32, data=data)]),
                    metadata=admin,
                )
                raise AssertionError("a pack not matching its id was accepted")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            made = hub.PutPack(
                iter(
                    [
                        pb.PutPackRequest(
                            dataset="team/geo-db", pack=PackId.of(data).digest, data=data[:5]
                        ),
                        pb.PutPackRequest(data=data[5:]),
                    ]
                ),
                metadata=admin,
            )
            assert made.created

    await trio.to_thread.run_sync(calls)
