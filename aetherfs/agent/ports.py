"""The narrow interfaces the agent's outer parts (REST, gRPC, hub reports) are given by the
composition root, `daemon.py`, instead of the whole agent: they read status, ask for a check or
a shutdown, and reach the repository; none of them can change what a channel loop decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import trio

from aetherfs.agent.config import Subscription
from aetherfs.agent.log import Logger
from aetherfs.agent.state import VersionLive
from aetherfs.repository import Repository


class StatusView(Protocol):
    """What the agent knows about itself, read-only (`AgentState` is one)."""

    def snapshot(self) -> dict[str, Any]:
        """The status document, a plain JSON-able dict."""
        ...

    def channel(self, sub: Subscription) -> dict[str, Any] | None:
        """One subscription's status now; None if this agent does not follow it."""
        ...

    def subscriptions(self) -> tuple[Subscription, ...]: ...

    def listen(self) -> trio.MemoryReceiveChannel[VersionLive]:
        """Every switch from now on (a listener that falls behind is dropped)."""
        ...


class Control(Protocol):
    """What an API call may ask of the agent."""

    def poke(self) -> None:
        """Check every channel now."""
        ...

    def request_shutdown(self, reason: str) -> None:
        """Stop a moment from now, so the call that asked gets its answer."""
        ...


class RepoSource(Protocol):
    async def get(self) -> Repository:
        """The repository, opened on first use (and again after a failure to open)."""
        ...


@dataclass(frozen=True, slots=True)
class Surface:
    """What the REST and gRPC APIs are given by the daemon."""

    status: StatusView
    control: Control
    repos: RepoSource
    log: Logger
