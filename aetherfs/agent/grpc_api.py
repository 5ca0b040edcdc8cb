"""The gRPC AgentService. grpcio serves on its own threads; every call that reads or changes
agent state crosses into trio with `trio.from_thread.run(..., trio_token=...)`, so the state
is only ever touched from the trio thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import trio

from aetherfs.agent.ports import Surface
from aetherfs.agent.proto import agent_pb2, agent_pb2_grpc
from aetherfs.agent.state import VersionLive
from aetherfs.errors import AetherError, InvalidInput, bounded
from aetherfs.ops.push import push_directory


def status_reply(snap: dict[str, Any]) -> agent_pb2.StatusReply:
    channels = []
    for ch in snap["subscriptions"]:
        p = ch["progress"]
        channels.append(
            agent_pb2.ChannelStatus(
                dataset=ch["dataset"],
                channel=ch["channel"],
                state=ch["state"],
                live_manifest=ch["live"]["manifest"] if ch["live"] else "",
                live_path=ch["live"]["path"] if ch["live"] else "",
                live_since=(ch["live"]["since"] or 0.0) if ch["live"] else 0.0,
                progress=agent_pb2.Progress(
                    manifest=p["manifest"],
                    bytes_total=p["bytes_total"],
                    bytes_done=p["bytes_done"],
                    blocks_total=p["blocks_total"],
                    blocks_missing=p["blocks_missing"],
                    files_total=p["files_total"],
                    files_linked=p["files_linked"],
                )
                if p
                else None,
                last_error=ch["last_error"] or "",
                retries=ch["retries"],
            )
        )
    c = snap["cache"]
    return agent_pb2.StatusReply(
        agent_version=snap["agent"]["version"],
        pid=snap["agent"]["pid"],
        data_root=snap["agent"]["data_root"],
        channels=channels,
        bytes_by_source=snap["bytes_by_source"],
        cache=agent_pb2.CacheStatus(
            bytes=c["bytes"],
            blocks=c["blocks"],
            limit=c["limit"],
            evicted_bytes=c["evicted_bytes"],
            corrupt_dropped=c["corrupt_dropped"],
        ),
        last_error=snap["last_error"] or "",
        json=json.dumps(snap, sort_keys=True),
    )


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, surface: Surface, token: trio.lowlevel.TrioToken) -> None:
        self.status, self.control = surface.status, surface.control
        self.repos, self.log = surface.repos, surface.log
        self.token = token
        self.closing = threading.Event()

    def _abort(self, context: grpc.ServicerContext, exc: AetherError) -> None:
        # The code the error's class names: the same as the hub's for the same error.
        context.abort(grpc.StatusCode[exc.grpc_code], bounded(str(exc)))

    def Status(
        self, request: agent_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> agent_pb2.StatusReply:
        async def snap() -> dict[str, Any]:
            return self.status.snapshot()

        return status_reply(trio.from_thread.run(snap, trio_token=self.token))

    def Subscribe(
        self, request: agent_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.VersionLive]:
        wanted = set(request.refs)

        async def listen() -> trio.MemoryReceiveChannel[VersionLive]:
            return self.status.listen()

        receive = trio.from_thread.run(listen, trio_token=self.token)

        async def next_event() -> VersionLive | None:
            with trio.move_on_after(0.5):
                try:
                    return await receive.receive()
                except trio.EndOfChannel:
                    return None
            return None

        async def close() -> None:
            await receive.aclose()

        try:
            while context.is_active() and not self.closing.is_set():
                try:
                    event = trio.from_thread.run(next_event, trio_token=self.token)
                except trio.RunFinishedError:
                    return
                if event is None:
                    continue
                if wanted and f"{event.dataset}:{event.channel}" not in wanted:
                    continue
                yield agent_pb2.VersionLive(
                    dataset=event.dataset,
                    channel=event.channel,
                    manifest_id=event.manifest_id,
                    path=event.path,
                    time=event.time,
                )
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run(close, trio_token=self.token)

    def Publish(
        self, request: agent_pb2.PublishRequest, context: grpc.ServicerContext
    ) -> agent_pb2.PublishReply:
        directory = Path(request.directory)
        try:
            if not directory.is_absolute() or not directory.is_dir():
                raise InvalidInput(f"Publish needs an absolute directory path, not {directory}")
            tags = list(request.tags) or []
            if not request.no_latest and "latest" not in tags:
                tags.append("latest")

            async def repository() -> Any:
                return await self.repos.get()

            repo = trio.from_thread.run(repository, trio_token=self.token)
            # This grpc thread does the (blocking) push; only the result crosses back.
            result = push_directory(repo, directory, request.dataset, tags)
        except AetherError as exc:
            self._abort(context, exc)
            raise AssertionError("unreachable") from None

        async def after() -> None:
            self.log.info(
                "publish.done",
                dataset=result.dataset,
                manifest=result.manifest_id.hex(),
                tags=",".join(result.tags),
                new_bytes=result.stats.new_bytes,
            )
            self.control.poke()

        trio.from_thread.run(after, trio_token=self.token)
        return agent_pb2.PublishReply(
            manifest_id=result.manifest_id.hex(),
            tags=list(result.tags),
            files=result.stats.files,
            bytes=result.stats.bytes,
            new_bytes=result.stats.new_bytes,
        )

    def Shutdown(
        self, request: agent_pb2.ShutdownRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ShutdownReply:
        trio.from_thread.run_sync(self.control.request_shutdown, "grpc", trio_token=self.token)
        return agent_pb2.ShutdownReply()


async def serve_grpc(
    surface: Surface,
    binds: list[str],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    token = trio.lowlevel.current_trio_token()
    servicer = AgentServicer(surface, token)
    log = surface.log
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc"))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    for bind in binds:
        if bind.startswith("unix:"):
            path = Path(bind[len("unix:") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_socket():
                path.unlink()
        try:
            port = server.add_insecure_port(bind)
        except RuntimeError as exc:
            raise InvalidInput(f"cannot listen for gRPC on {bind}: {exc}") from None
        if port == 0 and not bind.startswith("unix:"):
            raise InvalidInput(f"cannot listen for gRPC on {bind}: address in use?")
    server.start()
    log.info("grpc.listening", bind=",".join(binds))
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        servicer.closing.set()
        stopped = server.stop(grace=0.5)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stopped.wait, 2.0)
