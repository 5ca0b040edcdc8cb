"""The report an agent sends its hub: the status document, live versions with their bytes."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable

import trio

from aetherfs.agent.log import Logger
from aetherfs.agent.peers import _hub_hints
from aetherfs.agent.report import _report
from aetherfs.net.discovery import PeerAddress as StaticPeer
from aetherfs.repository.hub_client import PeerHint


def test_a_live_version_carries_the_bytes_its_fetch_took_from_each_source() -> None:
    snap = {
        "subscriptions": [
            {"dataset": "geo", "channel": "stable", "live": {"manifest": "aa", "since": 5.0}},
            {"dataset": "geo", "channel": "canary", "live": {"manifest": "bb", "since": 6.0}},
            {"dataset": "roads", "channel": "stable", "live": None},
        ],
        "fetches": [{"manifest": "aa", "bytes": {"cache": 1, "peers": 200, "store": 30}}],
        "file_reads": [{"ref": "geo:stable", "path": "a", "reads": 3}],
    }
    doc = _report(snap)
    assert "file_reads" not in doc
    live = [s["live"] for s in doc["subscriptions"]]
    assert live[0]["bytes_by_source"] == {"cache": 1, "peers": 200, "store": 30}
    assert "bytes_by_source" not in live[1] and live[2] is None


def test_the_peer_address_goes_in_the_report_only_in_a_shape_the_hub_accepts() -> None:
    on = {"enabled": True, "address": "10.1.2.3", "port": 7422, "fleet": "0123456789abcdef"}
    assert _report({"peer_exchange": on})["peer"] == {
        "addresses": ["10.1.2.3"],
        "port": 7422,
        "fleet": "0123456789abcdef",
    }
    for broken in (
        {"enabled": False},
        {"address": "0.0.0.0"},
        {"address": "224.0.0.251"},
        {"address": "::1"},
        {"address": "a-host-name"},
        {"port": None},
        {"fleet": "bad fleet!"},
    ):
        assert "peer" not in _report({"peer_exchange": on | broken}), broken


async def test_hub_hints_are_asked_at_a_jittered_interval_and_handed_to_discovery() -> None:
    every = 0.05  # the real clock: the hints are asked on a thread, which a mock clock skips
    asked: list[float] = []
    handed: list[list[StaticPeer]] = []

    class Client:
        def peer_hints(self) -> list[PeerHint]:  # asked on a thread
            return [PeerHint("10.0.0.7", 7422)]

    class Seen:
        def set_hub_hints(self, hints: Iterable[StaticPeer]) -> None:
            asked.append(trio.current_time())
            handed.append(list(hints))

    with trio.move_on_after(every * 10):
        await _hub_hints(Client(), Seen(), Logger(io.StringIO()), every)  # type: ignore[arg-type]
    assert handed[0] == [StaticPeer("10.0.0.7", 7422)]
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert gaps and all(0.8 * every <= g for g in gaps)
