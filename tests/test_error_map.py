"""One error map: every AetherError subclass gets the same codes from all four APIs.

Each error class names its HTTP status, REST `code` and gRPC code (aetherfs/errors.py). This
walks every subclass (after importing every module, so none hides) and raises it inside the
hub's REST and gRPC servers (one hub, real sockets, real grpcio client) and the agent's REST
and gRPC apps, and checks that all four answer what the class says.
"""

from __future__ import annotations

import errno
import importlib
import os
import pkgutil
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import trio

import aetherfs
from aetherfs.agent import api as agent_api
from aetherfs.agent import grpc_api as agent_grpc
from aetherfs.agent.build import is_disk_full
from aetherfs.agent.dataroot import DataRoot
from aetherfs.agent.ports import Surface
from aetherfs.agent.proto import agent_pb2, agent_pb2_grpc
from aetherfs.errors import (
    AetherError,
    Conflict,
    DiskFull,
    KeyringError,
    LocalIOError,
    StoreUnavailable,
)
from aetherfs.hub.config import HubConfig
from aetherfs.hub.grpc_gen import hub_pb2 as pb
from aetherfs.hub.grpc_gen import hub_pb2_grpc as pb_grpc
from aetherfs.hub.service import HubService
from tests.hub.helpers import open_repo, start_hub


def all_error_classes() -> list[type[AetherError]]:
    for module in pkgutil.walk_packages(aetherfs.__path__, "aetherfs."):
        importlib.import_module(module.name)
    found: list[type[AetherError]] = []
    todo: list[type[AetherError]] = [AetherError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


ERRORS = all_error_classes()


def test_the_walk_finds_the_classes_of_every_layer() -> None:
    names = {c.__name__ for c in ERRORS}
    # Shared, hub-only and agent-only classes: the walk reaches all of them.
    assert {"NotFound", "DiskFull", "Unauthenticated", "Overloaded", "DataRootBusy"} <= names


def test_every_class_names_valid_codes() -> None:
    for cls in ERRORS:
        assert 400 <= cls.http_status <= 599, cls
        assert cls.grpc_code in grpc.StatusCode.__members__, cls
        assert cls.grpc_code != "OK" and cls.error_code, cls
    # Where the old tables disagreed, the one docs/hub.md promises.
    assert Conflict.grpc_code == "ABORTED" and Conflict.http_status == 409
    assert KeyringError.http_status == 500 and KeyringError.grpc_code == "INTERNAL"


class _Raising:
    """What the agent's APIs are given (its `Surface`), raising the error under test: the apps
    themselves are the real ones."""

    def __init__(self) -> None:
        self.error: AetherError = AetherError("unset")
        self.surface = Surface(
            status=types.SimpleNamespace(snapshot=self._raise),  # type: ignore[arg-type]
            control=types.SimpleNamespace(poke=lambda: None),  # type: ignore[arg-type]
            repos=types.SimpleNamespace(get=self._araise),  # type: ignore[arg-type]
            log=types.SimpleNamespace(info=lambda *a, **k: None),  # type: ignore[arg-type]
        )

    def _raise(self) -> Any:
        raise self.error

    async def _araise(self) -> Any:
        raise self.error


def _make(cls: type[AetherError]) -> AetherError:
    message = f"a test {cls.__name__}"
    try:
        return cls(message)
    except TypeError:  # a class whose constructor takes its parts (TagRollback): only the
        made = cls.__new__(cls)  # codes are under test, so skip it and keep the message
        Exception.__init__(made, message)
        return made


@pytest.fixture
def raising_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[AetherError]]:
    """HubService.list_datasets raises the error in the box (REST and gRPC both call it)."""
    box: list[AetherError] = [AetherError("unset")]

    def list_datasets(self: HubService, principal: object) -> Any:
        raise box[0]

    monkeypatch.setattr(HubService, "list_datasets", list_datasets)
    yield box


async def test_hub_and_agent_give_the_same_codes_for_every_error(
    nursery: trio.Nursery, tmp_path: Path, raising_service: list[AetherError]
) -> None:
    repo = open_repo((tmp_path / "store").as_uri(), tmp_path / "keys" / "hub.json")
    config = HubConfig(listen="127.0.0.1:0", grpc_listen="127.0.0.1:0", poll_interval=0.2)
    hub = await start_hub(nursery, repo, config)
    agent = _Raising()
    socket = tmp_path / "agent-grpc.sock"
    await nursery.start(agent_grpc.serve_grpc, agent.surface, [f"unix:{socket}"])
    live = agent_api.LiveFiles(
        DataRoot(tmp_path / "data"), trio.CapacityLimiter(1), lambda ref, path: None
    )
    agent_app: Any = agent_api.build_app(agent.surface, live)
    admin = [("authorization", f"Bearer {hub.admin}")]

    def grpc_codes() -> tuple[str, str]:
        assert hub.addresses.grpc is not None
        with grpc.insecure_channel(hub.addresses.grpc) as channel:
            stub = pb_grpc.HubStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as hub_err:
                stub.ListDatasets(pb.ListDatasetsRequest(), metadata=admin, timeout=10)
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            agent_stub = agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
            request = agent_pb2.PublishRequest(directory=str(tmp_path), dataset="team/x")
            with pytest.raises(grpc.RpcError) as agent_err:
                agent_stub.Publish(request, timeout=10)
        return hub_err.value.code().name, agent_err.value.code().name

    agent_rest = httpx.AsyncClient(transport=httpx.ASGITransport(agent_app), base_url="http://a")
    async with agent_rest, httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        for cls in ERRORS:
            error = _make(cls)
            raising_service[0] = agent.error = error
            hub_rest = await http.get(
                "/v1/datasets", headers={"Authorization": f"Bearer {hub.admin}"}
            )
            agent_reply = await agent_rest.get("/v1/status")
            hub_grpc, agent_grpc_code = await trio.to_thread.run_sync(grpc_codes)
            want = (cls.http_status, cls.error_code, cls.grpc_code)
            seen = {
                "hub REST": (hub_rest.status_code, hub_rest.json()["error"]["code"], hub_grpc),
                "agent": (
                    agent_reply.status_code,
                    agent_reply.json()["error"]["code"],
                    agent_grpc_code,
                ),
            }
            assert seen == {"hub REST": want, "agent": want}, cls
            assert hub_rest.json()["error"]["message"] == str(error)
    hub.cancel.cancel()


def test_a_full_disk_is_told_by_its_errno_not_by_its_words() -> None:
    """The block cache replaces an ENOSPC by another error (`from None`); the build still
    reports DiskFull, a local fault, and never mistakes the store's words for one."""

    def replaced(cause: BaseException) -> BaseException:
        try:
            try:
                raise cause
            except BaseException:
                raise StoreUnavailable("cannot use the block cache: disk full") from None
        except StoreUnavailable as exc:
            return exc

    assert is_disk_full(replaced(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert is_disk_full(OSError(errno.EDQUOT, "quota"))
    assert is_disk_full(DiskFull("full"))
    # Words alone are not a full disk (a store's message may quote a path or a peer's text).
    assert not is_disk_full(StoreUnavailable("No space left on device"))
    assert not is_disk_full(replaced(OSError(errno.EACCES, "denied")))
    assert issubclass(DiskFull, LocalIOError) and not issubclass(DiskFull, StoreUnavailable)
