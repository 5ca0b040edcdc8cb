"""The hub's gRPC service (protocol/hub.proto) on grpcio's own threads.

grpcio has no trio integration, so its server runs a thread pool of its own; each call
authenticates by crossing into the hub's trio loop (`trio.from_thread.run` with the loop's
token), then runs HubService in the gRPC thread, which may block on the store. Watch
subscribes in the trio loop and pulls events across one at a time.

A caller who has not authenticated must not make the hub hold anything: every method is
served as a request-streaming handler (`_AuthFirst`), so the caller is authenticated before
its request message is read, and calls that upload are refused unread without credentials.
No request message may exceed `limits.grpc_message`; packs and manifests arrive in pieces,
at most `grpc_uploads` at once. Watch streams, which each hold a thread, are bounded per
caller and in all (`StreamQuota`), so unary calls always have threads left.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import grpc
import trio

from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.names import check_tag
from aetherfs.errors import AetherError, InvalidInput, NotFound, bounded
from aetherfs.hub.app import Hub
from aetherfs.hub.auth import Principal, bearer
from aetherfs.hub.config import split_host_port
from aetherfs.hub.errors import OutOfRange, Overloaded, TooLarge, Unauthenticated
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.hub.grpc_gen import hub_pb2_grpc as pb_grpc
from aetherfs.hub.models import Tag
from aetherfs.hub.watch import StreamQuota, Subscription

T = TypeVar("T")
log = logging.getLogger("aetherfs.hub.grpc")

WATCH_TICK = 0.5  # how often a Watch stream checks that its client is still there
UPLOAD_WAIT = 30.0  # how long an upload waits for a free slot before RESOURCE_EXHAUSTED
SERVICE = "/aetherfs.hub.v1.Hub/"
# Calls whose requests are large: nothing of them is read before the caller is known.
UPLOADS = frozenset({SERVICE + "PutPack", SERVICE + "PutManifest", SERVICE + "PutStatus"})


def _tag(doc: Tag) -> pb.Tag:
    return pb.Tag(
        dataset=doc.dataset,
        tag=doc.tag,
        manifest=bytes.fromhex(doc.manifest),
        seq=doc.seq,
        time=doc.time,
        signer=bytes.fromhex(doc.signer),
        signed=base64.b64decode(doc.signed),
    )


def _manifest_id(raw: bytes) -> ManifestId:
    return ManifestId(raw)  # InvalidInput unless 32 bytes


class _Upload(Protocol):
    dataset: str


U = TypeVar("U", bound=_Upload)


def grpc_status(exc: AetherError) -> grpc.StatusCode:
    """The gRPC code the error's class names (`grpc_code`, beside its HTTP status)."""
    return grpc.StatusCode[exc.grpc_code]


def _abort(context: grpc.ServicerContext, exc: AetherError) -> NoReturn:
    code = grpc_status(exc)
    log.info("gRPC call refused: %s %s", code.name, bounded(str(exc), 200))
    context.abort(code, bounded(str(exc)))
    raise AssertionError("unreachable")  # context.abort raises


class HubServicer(pb_grpc.HubServicer):
    def __init__(self, hub: Hub, trio_token: trio.lowlevel.TrioToken) -> None:
        self.hub = hub
        self.service = hub.service
        self.token = trio_token
        config = hub.config
        self.watches = StreamQuota(config.grpc_watch_per_principal, config.grpc_watch_streams)
        self.uploads = threading.BoundedSemaphore(config.grpc_uploads)
        self._caller = threading.local()  # the principal `_AuthFirst` found for this thread's call

    # Plumbing ---------------------------------------------------------------------------
    def authenticate(self, context: grpc.ServicerContext) -> Principal | None:
        """Who is calling, from the call's metadata alone; kept for the handler that follows."""
        header = dict(context.invocation_metadata()).get("authorization")
        credential = bearer(header if isinstance(header, str) else None)
        try:
            who = trio.from_thread.run(
                self.hub.auth.authenticate, credential, trio_token=self.token
            )
        except AetherError as exc:
            _abort(context, exc)
        self._caller.who = who
        return who

    def _principal(self, context: grpc.ServicerContext) -> Principal | None:
        who: Principal | None = getattr(self._caller, "who", None)
        return who

    def _call(self, context: grpc.ServicerContext, fn: Callable[[Principal | None], T]) -> T:
        try:
            return fn(self._principal(context))
        except AetherError as exc:
            _abort(context, exc)
        except Exception:
            # Not ours to explain to the caller, but never silent here.
            log.exception("gRPC call failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error: see the hub's log")
            raise

    def _gather(
        self, who: Principal | None, requests: Iterator[U], piece: Callable[[U], bytes], limit: int
    ) -> tuple[U, bytes]:
        """The first message of an upload and all its pieces joined, read only once the caller
        may write to the dataset the first message names."""
        first = next(requests, None)
        if first is None:
            raise InvalidInput("the upload carried no message: send the names and the first piece")
        self.service.require(who, first.dataset, "write")
        parts = [piece(first)]
        total = len(parts[0])
        for more in requests:
            if more.dataset not in ("", first.dataset):
                raise InvalidInput("every piece of one upload must be for the same dataset")
            total += len(piece(more))
            if total > limit:
                raise TooLarge(f"the upload is over the limit of {limit} bytes")
            parts.append(piece(more))
        if total > limit:
            raise TooLarge(f"the upload is over the limit of {limit} bytes")
        return first, b"".join(parts)

    @contextlib.contextmanager
    def _upload_slot(self) -> Iterator[None]:
        if not self.uploads.acquire(timeout=UPLOAD_WAIT):
            raise Overloaded("the hub is taking as many uploads as it may at once; retry later")
        try:
            yield
        finally:
            self.uploads.release()

    # Operations -------------------------------------------------------------------------
    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoReply:
        info = self.service.info()
        return pb.InfoReply(
            store_id=info.store_id,
            signer=bytes.fromhex(info.signer),
            trusted_signers=[bytes.fromhex(k) for k in info.trusted_signers],
        )

    def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.ServicerContext) -> pb.Principal:
        def run(who: Principal | None) -> pb.Principal:
            if who is None:
                raise Unauthenticated("authentication required: send `authorization: Bearer TOKEN`")
            return pb.Principal(
                subject=who.subject, groups=sorted(who.groups), admin=who.admin, via=who.via
            )

        return self._call(context, run)

    def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> pb.ListDatasetsReply:
        found = self._call(context, self.service.list_datasets)
        return pb.ListDatasetsReply(
            datasets=[pb.DatasetSummary(name=d.name, tags=d.tags) for d in found]
        )

    def CreateDataset(self, request: pb.DatasetRef, context: grpc.ServicerContext) -> pb.DatasetRef:
        self._call(context, lambda who: self.service.create_dataset(who, request.dataset))
        return pb.DatasetRef(dataset=request.dataset)

    def DeleteDataset(self, request: pb.DatasetRef, context: grpc.ServicerContext) -> pb.Empty:
        self._call(context, lambda who: self.service.delete_dataset(who, request.dataset))
        return pb.Empty()

    def ListTags(self, request: pb.DatasetRef, context: grpc.ServicerContext) -> pb.TagList:
        listing = self._call(context, lambda who: self.service.list_tags(who, request.dataset))
        return pb.TagList(
            tags=[_tag(doc) for doc in listing.tags.values()],
            damaged=[pb.DamagedTag(tag=t, reason=why) for t, why in listing.damaged.items()],
        )

    def GetTag(self, request: pb.TagRef, context: grpc.ServicerContext) -> pb.Tag:
        return _tag(
            self._call(context, lambda who: self.service.get_tag(who, request.dataset, request.tag))
        )

    def TagHistory(self, request: pb.TagRef, context: grpc.ServicerContext) -> pb.TagList:
        records = self._call(
            context, lambda who: self.service.tag_history(who, request.dataset, request.tag)
        )
        return pb.TagList(tags=[_tag(doc) for doc in records])

    def SetTag(self, request: pb.SetTagRequest, context: grpc.ServicerContext) -> pb.Tag:
        expect = request.expect_seq if request.HasField("expect_seq") else None

        def run(who: Principal | None) -> Tag:
            return self.service.set_tag(
                who, request.dataset, request.tag, _manifest_id(request.manifest), expect
            )

        doc = self._call(context, run)
        trio.from_thread.run_sync(self.hub.watch.kick, request.dataset, trio_token=self.token)
        return _tag(doc)

    def GetManifest(self, request: pb.ManifestRef, context: grpc.ServicerContext) -> pb.Blob:
        data = self._call(
            context,
            lambda who: self.service.get_manifest(
                who, request.dataset, _manifest_id(request.manifest)
            ),
        )
        return pb.Blob(data=data)

    def PutManifest(
        self, request_iterator: Iterator[pb.PutManifestRequest], context: grpc.ServicerContext
    ) -> pb.PutReply:
        def run(who: Principal | None) -> bool:
            with self._upload_slot():
                first, stored = self._gather(
                    who, request_iterator, lambda m: m.stored, self.hub.config.limits.manifest
                )
                return self.service.put_manifest(
                    who, first.dataset, _manifest_id(first.manifest), stored
                )

        return pb.PutReply(created=self._call(context, run))

    def StatPack(self, request: pb.PackRef, context: grpc.ServicerContext) -> pb.PackInfo:
        def run(who: Principal | None) -> pb.PackInfo:
            try:
                size = self.service.pack_size(who, request.dataset, PackId(request.pack))
            except NotFound:
                return pb.PackInfo(present=False)
            return pb.PackInfo(present=True, size=size)

        return self._call(context, run)

    def GetPackRange(self, request: pb.PackRange, context: grpc.ServicerContext) -> pb.Blob:
        def run(who: Principal | None) -> bytes:
            pack_id = PackId(request.pack)
            size = self.service.pack_size(who, request.dataset, pack_id)
            start = request.start
            if start >= size:  # REST answers 416 here
                raise OutOfRange(f"the range starts at byte {start}, past the pack's {size} bytes")
            length = min(request.length or size, size - start)
            if length > self.hub.config.limits.pack:
                raise TooLarge("ask for at most the pack size limit in one range")
            return self.service.get_pack_range(who, request.dataset, pack_id, start, length)

        return pb.Blob(data=self._call(context, run))

    def PutPack(
        self, request_iterator: Iterator[pb.PutPackRequest], context: grpc.ServicerContext
    ) -> pb.PutReply:
        def run(who: Principal | None) -> bool:
            with self._upload_slot():
                first, data = self._gather(
                    who, request_iterator, lambda m: m.data, self.hub.config.limits.pack
                )
                return self.service.put_pack(who, first.dataset, PackId(first.pack), data)

        return pb.PutReply(created=self._call(context, run))

    def GetKeys(self, request: pb.DatasetRef, context: grpc.ServicerContext) -> pb.Keys:
        keys = self._call(context, lambda who: self.service.keys(who, request.dataset))
        return pb.Keys(
            dataset=keys.dataset,
            store_id=keys.store_id,
            dataset_key=bytes.fromhex(keys.dataset_key),
            convergence_secret=bytes.fromhex(keys.convergence_secret or ""),
            trusted_signers=[bytes.fromhex(k) for k in keys.trusted_signers],
        )

    def PutStatus(self, request: pb.StatusReport, context: grpc.ServicerContext) -> pb.Empty:
        def run(who: Principal | None) -> None:
            if len(request.report_json) > self.hub.config.limits.status_report:
                raise TooLarge("the status report is over the size limit")
            try:
                report = json.loads(request.report_json)
            except ValueError:
                raise InvalidInput("report_json is not valid JSON") from None
            if not isinstance(report, dict):
                raise InvalidInput("report_json must be a JSON object")
            self.service.put_status(who, request.agent, report)

        self._call(context, run)
        return pb.Empty()

    def GetStatus(self, request: pb.AgentRef, context: grpc.ServicerContext) -> pb.StatusReport:
        doc = self._call(context, lambda who: self.service.get_status(who, request.agent))
        return pb.StatusReport(
            agent=doc.agent, report_json=json.dumps(doc.report), received=doc.received
        )

    def Watch(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.TagEvent]:
        def check(who: Principal | None) -> str:
            self.service.require(who, request.dataset, "read")
            for tag in request.tags:
                check_tag(tag)
            # Callers without credentials are told apart by address.
            caller = who.subject if who else "anonymous@" + context.peer().rpartition(":")[0]
            self.watches.acquire(caller)
            return caller

        caller = self._call(context, check)
        try:
            yield from self._watch(request, context)
        finally:
            self.watches.release(caller)

    def _watch(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.TagEvent]:
        tags = frozenset(request.tags) or None
        subscription: Subscription = trio.from_thread.run_sync(
            self.hub.watch.subscribe, request.dataset, tags, trio_token=self.token
        )
        try:
            while context.is_active():
                event = trio.from_thread.run(subscription.next, WATCH_TICK, trio_token=self.token)
                if event is not None:
                    yield pb.TagEvent(
                        dataset=event.dataset,
                        tag=event.tag,
                        seq=event.seq,
                        manifest=bytes.fromhex(event.manifest),
                    )
        except (trio.EndOfChannel, trio.RunFinishedError):
            return
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(subscription.close, trio_token=self.token)


if TYPE_CHECKING:  # generic only in the type stubs
    Handler = grpc.RpcMethodHandler[Any, Any]


class _AuthFirst(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Serve every method as request-streaming, so the caller is known before its request is
    read (grpcio reads a unary request whole, up to the message limit, before the handler runs).

    Runs in grpcio's polling thread: it only wraps handlers, the work runs in the call's thread.
    """

    def __init__(self, servicer: HubServicer) -> None:
        self.servicer = servicer

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(details)
        if handler is None:
            return None
        upload = details.method in UPLOADS
        servicer = self.servicer

        def known(context: grpc.ServicerContext) -> None:
            if servicer.authenticate(context) is None and upload:
                _abort(context, Unauthenticated("uploads need `authorization: Bearer TOKEN`"))

        def one(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            request = next(requests, None)
            if request is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request")
            return request

        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if (unary := handler.unary_unary) is not None:

            def unary_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                known(context)
                return unary(one(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(unary_unary, **codec)
        if (gather := handler.stream_unary) is not None:

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                known(context)
                return gather(requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **codec)
        if (stream := handler.unary_stream) is not None:

            def unary_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                known(context)
                yield from stream(one(requests, context), context)

            return grpc.stream_stream_rpc_method_handler(unary_stream, **codec)
        return handler


def server_credentials(cert: str, key: str) -> grpc.ServerCredentials:
    with open(key, "rb") as k, open(cert, "rb") as c:
        return grpc.ssl_server_credentials([(k.read(), c.read())])


async def serve_grpc(
    hub: Hub,
    address: str,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve gRPC on `address` (HOST:PORT, port 0 for any) until cancelled."""
    limits = hub.config.limits
    servicer = HubServicer(hub, trio.lowlevel.current_trio_token())
    server = grpc.server(
        ThreadPoolExecutor(max_workers=hub.config.grpc_threads, thread_name_prefix="grpc"),
        interceptors=[_AuthFirst(servicer)],
        options=[
            ("grpc.max_receive_message_length", limits.grpc_message),
            # A fixed 1 MiB window per stream: with BDP probing on, C-core widened windows and
            # buffered tens to hundreds of MiB of unauthenticated bodies before the interceptor
            # refused them (tests/hub/test_hostile.py: 12 x 80 MiB grew the hub 12-27 MiB alone,
            # 113-259 MiB in full-suite runs; now 2-5 MiB). 1 MiB per round trip still carries
            # 20 MB/s per stream at 50 ms.
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", 1024 * 1024),
            # Replies carry at most a pack (GetPackRange) or a manifest (GetManifest).
            ("grpc.max_send_message_length", max(limits.pack, limits.manifest) + 1024 * 1024),
        ],
    )
    pb_grpc.add_HubServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    host, _ = split_host_port(address)
    config = hub.config
    if config.tls_cert and config.tls_key:
        port = server.add_secure_port(address, server_credentials(config.tls_cert, config.tls_key))
    else:
        port = server.add_insecure_port(address)
    server.start()
    try:
        task_status.started(f"{host}:{port}")
        await trio.sleep_forever()
    finally:
        # Stop accepting; give calls in flight a moment, without blocking the loop.
        done = server.stop(grace=0.5)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(done.wait, 2.0)
