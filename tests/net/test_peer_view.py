"""The merged peer view: one entry per agent, fleet and self filtered, silence means gone."""

from __future__ import annotations

from dataclasses import replace

from aetherfs.net.dns_sd import ServiceRecord
from aetherfs.net.ids import AgentId, FleetId
from aetherfs.net.peer_view import PeerGone, PeerSeen, PeerView, Source

ME = AgentId("me")
FLEET = FleetId("f1")


def _record(agent: str = "a", fleet: FleetId = FLEET, inc: str = "1") -> ServiceRecord:
    return ServiceRecord(AgentId(agent), fleet, 1, 7070, inc, ("10.0.0.2",))


def test_first_report_is_seen_and_repeats_are_quiet() -> None:
    view = PeerView(ME, FLEET, gone_after=6)
    [seen] = view.observe(_record(), Source.MDNS, now=0)
    assert seen == PeerSeen(AgentId("a"), FLEET, 1, ("10.0.0.2",), 7070, Source.MDNS)
    assert view.observe(_record(), Source.STATIC, now=1) == []
    assert view.peers[AgentId("a")].sources == {Source.MDNS, Source.STATIC}


def test_other_fleets_and_self_are_ignored() -> None:
    view = PeerView(ME, FLEET, gone_after=6)
    assert view.observe(_record(fleet=FleetId("f2")), Source.MDNS, now=0) == []
    assert view.observe(_record(agent="me"), Source.MDNS, now=0) == []
    assert view.peers == {}


def test_a_change_is_seen_again() -> None:
    view = PeerView(ME, FLEET, gone_after=6)
    view.observe(_record(), Source.MDNS, now=0)
    moved = replace(_record(), port=7071)
    assert [e.port for e in view.observe(moved, Source.HUB, now=1) if isinstance(e, PeerSeen)] == [
        7071
    ]


def test_a_restart_is_gone_then_seen() -> None:
    view = PeerView(ME, FLEET, gone_after=6)
    view.observe(_record(inc="1"), Source.MDNS, now=0)
    events = view.observe(_record(inc="2"), Source.MDNS, now=1)
    assert [type(e) for e in events] == [PeerGone, PeerSeen]
    assert events[0] == PeerGone(AgentId("a"), "restarted")


def test_silence_longer_than_gone_after_is_gone_and_heard_keeps_alive() -> None:
    view = PeerView(ME, FLEET, gone_after=6)
    view.observe(_record("a"), Source.MDNS, now=0)
    view.observe(_record("b"), Source.MDNS, now=0)
    view.heard(AgentId("b"), now=5)
    assert view.next_deadline() == 6
    assert view.expire(now=6) == []
    assert view.expire(now=6.5) == [PeerGone(AgentId("a"), "silent")]
    assert view.expire(now=11.5) == [PeerGone(AgentId("b"), "silent")]
    assert view.next_deadline() is None


def test_goodbye_is_gone_once() -> None:
    view = PeerView(ME, FLEET, gone_after=6)
    view.observe(_record(), Source.MDNS, now=0)
    assert view.goodbye(AgentId("a")) == [PeerGone(AgentId("a"), "goodbye")]
    assert view.goodbye(AgentId("a")) == []
