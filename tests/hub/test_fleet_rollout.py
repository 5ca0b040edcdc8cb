"""The fleet page's rollout picture: the series from explicit report times, the history the hub
keeps per agent, `/v1/fleet/rollout`, and the page in headless Chromium (three agents reporting
through the real API, one with bytes from peers). Screenshot: AETHERFS_SCREENSHOTS or the
test's temporary directory (`fleet-rollout.png`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from aetherfs.core.ids import ManifestId
from aetherfs.hub import models, rollout
from aetherfs.hub.rollout import Live, Step
from aetherfs.hub.rollout_chart import chart
from aetherfs.ops.push import push_directory
from aetherfs.store import open_store
from tests.hub.helpers import RunningHub, make_tree
from tests.hub.webdriver import chromium_binaries, headless_chromium

V1, V2 = "a" * 64, "b" * 64
GEO = ("team/geo-db", "stable")


def live(manifest: str, since: float, **sources: int) -> Live:
    return Live("team/geo-db", "stable", manifest, since, sources)


def subscription(manifest: str | None, since: float | None, **sources: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"subscription": "team/geo-db:stable", "dataset": "team/geo-db"}
    entry["channel"] = "stable"
    entry["state"] = "idle"
    entry["live"] = (
        {"manifest": manifest, "path": "/x", "since": since, "bytes_by_source": sources}
        if manifest
        else None
    )
    return entry


# The series ----------------------------------------------------------------------------------
def test_steps_follow_each_host_going_live_and_moving_on() -> None:
    histories = {
        "a": [live(V1, 100), live(V2, 400, store=1000, cache=24)],
        "b": [live(V1, 120), live(V2, 300, store=100, peers=900)],
        "c": [live(V1, 150, store=1000)],
        "gone": [live(V2, 50, store=5)],  # no longer subscribed: not counted
    }
    subs = {"a": {GEO}, "b": {GEO}, "c": {GEO}, "gone": set()}
    [found] = rollout.rollouts(histories, subs, until=900, stored_size=lambda d, m: 1000)
    assert (found.dataset, found.channel, found.hosts_total) == ("team/geo-db", "stable", 3)
    assert (found.start, found.end) == (70, 430)  # the changes, padded by 30 s
    v2, v1 = found.versions  # newest first
    assert v2.manifest == V2 and v2.steps == (Step(300, 1), Step(400, 2))
    assert v2.hosts_live == 2 and v2.hosts_counted == 2
    assert dict(v2.bytes_by_source) == {"store": 1100, "peers": 900, "cache": 24}
    assert list(v2.bytes_by_source) == ["store", "peers", "cache"]  # drawn in this order
    assert v2.store_ratio == pytest.approx(1.1)
    assert v1.steps == (Step(100, 1), Step(120, 2), Step(150, 3), Step(300, 2), Step(400, 1))
    assert v1.hosts_live == 1 and v1.hosts_counted == 1


def test_simultaneous_moves_make_one_step_and_sources_are_an_open_set() -> None:
    histories = {
        "a": [live(V1, 10), live(V2, 20, relay=7)],
        "b": [live(V1, 10), live(V2, 20, peers=3)],
    }
    [found] = rollout.rollouts(histories, {"a": {GEO}, "b": {GEO}}, until=30)
    v2, v1 = found.versions
    assert v1.steps == (Step(10, 2), Step(20, 0)) and v2.steps == (Step(20, 2),)
    assert list(v2.bytes_by_source) == ["peers", "relay"]
    assert v2.store_ratio is None  # no stored size known, no store bytes


def test_a_channel_nobody_has_made_live_yet_has_no_versions() -> None:
    [found] = rollout.rollouts({}, {"a": {GEO}}, until=5)
    assert found.hosts_total == 1 and found.versions == () and found.start == found.end == 5


def test_only_the_newest_versions_are_shown() -> None:
    moves = [live(f"{i:x}" * 64, float(i)) for i in range(1, 6)]
    [found] = rollout.rollouts({"a": moves}, {"a": {GEO}}, until=9)
    assert [v.manifest for v in found.versions] == [f"{i:x}" * 64 for i in (5, 4, 3)]


# Reading reports and keeping history -----------------------------------------------------------
def test_reports_are_read_defensively() -> None:
    report = {
        "subscriptions": [
            subscription(V1, 100.0, store=5, peers=6),
            {**subscription(V2, None), "channel": "canary"},  # no since: the time received
            {**subscription("not-hex", 1.0)},
            {**subscription(V1, 1.0), "dataset": "../etc"},
            "junk",
            {**subscription(V1, 1.0), "channel": "x", "live": {"manifest": V1, "since": "soon"}},
        ],
        "versions": [{"manifest": V2, "bytes_by_source": {"store": 9, "BAD NAME": 1, "x": -1}}],
    }
    found = rollout.lives_in(report, received=500.0)
    assert found == [
        Live("team/geo-db", "stable", V1, 100.0, {"store": 5, "peers": 6}),
        Live("team/geo-db", "canary", V2, 500.0, {"store": 9}),  # from versions[]
        Live("team/geo-db", "x", V1, 500.0, {}),
    ]
    assert rollout.lives_in({"subscriptions": "nope", "versions": 3}, 1.0) == []
    assert rollout.subscribed(report) == {
        ("team/geo-db", "stable"),
        ("team/geo-db", "canary"),
        ("team/geo-db", "x"),
    }


def test_a_restart_keeps_the_first_since_and_a_new_manifest_is_a_new_transition() -> None:
    held = rollout.merge([], [live(V1, 100)])
    held = rollout.merge(held, [live(V1, 250, store=10)])  # restarted: says 250 now
    assert held == [live(V1, 100, store=10)]
    held = rollout.merge(held, [live(V2, 300)])
    held = rollout.merge(held, [live(V1, 400)])  # rolled back: a transition too
    assert [(h.manifest, h.since) for h in held] == [(V1, 100), (V2, 300), (V1, 400)]
    assert len(rollout.merge([], [live(f"{i:x}" * 64, i) for i in range(1, 10)], limit=4)) == 4


def test_history_is_kept_on_the_store_bounded(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    for i in range(rollout.HISTORY_LIMIT + 5):
        manifest = f"{i % 16:x}{i // 16:x}" * 32
        report = {"subscriptions": [subscription(manifest, float(i), store=i)]}
        rollout.record(store, "edge-1", 1000.0, report)
    held = rollout.load_history(store, "edge-1")
    assert len(held) == rollout.HISTORY_LIMIT
    assert held[-1].since == rollout.HISTORY_LIMIT + 4 and held[0].since == 5
    doc = json.loads(store.get("hub/agents/edge-1/rollout.json"))
    assert doc["agent"] == "edge-1" and len(doc["transitions"]) == rollout.HISTORY_LIMIT
    store.put("hub/agents/edge-1/rollout.json", b"{damaged")
    assert rollout.load_history(store, "edge-1") == []  # the next report starts it again


def test_the_chart_draws_one_point_per_step_and_one_bar_per_source() -> None:
    [found] = rollout.rollouts(
        {"a": [live(V1, 0), live(V2, 50, store=30, peers=10, cache=0)], "b": [live(V1, 0)]},
        {"a": {GEO}, "b": {GEO}},
        until=100,
        stored_size=lambda d, m: 40,
    )
    drawn = chart(rollout.as_model(found))
    v2, v1 = drawn.versions
    assert [(p.time, p.hosts) for p in v1.points] == [(0, 2), (50, 1)]
    span = drawn.rollout.end - drawn.rollout.start  # 0 and 50, padded by 30 s each side
    assert (drawn.rollout.start, span) == (-30, 110)
    assert (v1.points[1].x - v1.points[0].x) / (drawn.x1 - drawn.x0) == pytest.approx(
        50 / 110, abs=1e-3
    )
    # across midnight: the end names its day too (the page's test sees a same-day axis)
    assert drawn.start_label == "1969-12-31 23:59:30 UTC"
    assert drawn.end_label == "1970-01-01 00:01:20 UTC"
    assert v1.points[0].y == drawn.y1  # two hosts of two: the top
    assert [(b.source, b.bytes) for b in v2.bars] == [("store", 30), ("peers", 10)]
    assert v2.bars[1].x == v2.bars[0].width and v2.peers_share == 0.25
    assert v1.bars == () and v1.total_bytes == 0


# Through the hub -------------------------------------------------------------------------------
T0 = 1_764_000_000.0  # the agents' clocks, in the reports


async def put_report(c: httpx.AsyncClient, hub: RunningHub, agent: str, subs: list[Any]) -> None:
    token = hub.token(agent, kind="agent")
    r = await c.put(
        f"/v1/agents/{agent}/status",
        json={"agent": {"version": "test"}, "subscriptions": subs, "site": "ams"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 204, r.text


def stored_size(hub: RunningHub, manifest_id: ManifestId) -> int:
    return hub.repo.get_manifest("team/geo-db", manifest_id).stored_size()


needs_chromium = pytest.mark.skipif(chromium_binaries() is None, reason="needs chromium")


@needs_chromium
async def test_the_fleet_page_draws_the_rollout(hub: RunningHub, tmp_path: Path) -> None:
    shots = Path(os.environ.get("AETHERFS_SCREENSHOTS", tmp_path / "shots"))
    src = tmp_path / "src"
    make_tree(src, seed=1, size=1_000_000)
    first = push_directory(hub.repo, src, "team/geo-db", ["1.0.0"])
    v1, v1_size = first.manifest_id.hex(), stored_size(hub, first.manifest_id)
    (src / "data.bin").write_bytes(os.urandom(600_000))
    pushed = push_directory(hub.repo, src, "team/geo-db", ["1.1.0", "stable"])
    v2 = pushed.manifest_id.hex()
    size = stored_size(hub, pushed.manifest_id)
    from_peers = size - size // 10

    async with hub.client() as c:
        # Each agent reports v1 live, then (two of them) v2: the hub keeps the transitions.
        for agent, since in (("edge-a", T0), ("edge-b", T0 + 60), ("edge-c", T0 + 120)):
            await put_report(c, hub, agent, [subscription(v1, since, store=v1_size)])
        await put_report(c, hub, "edge-a", [subscription(v2, T0 + 600, store=size, cache=0)])
        await put_report(
            c,
            hub,
            "edge-b",
            [subscription(v2, T0 + 660, store=size // 10, peers=from_peers, local=4096)],
        )
        # edge-b restarted: it says v2 went live again, with no figures for it this time
        await put_report(c, hub, "edge-b", [subscription(v2, T0 + 900)])

        assert (await c.get("/v1/fleet/rollout")).status_code == 401
        agent_only = {"Authorization": f"Bearer {hub.token('edge-z', kind='agent')}"}
        assert (await c.get("/v1/fleet/rollout", headers=agent_only)).status_code == 403
        r = await c.get("/v1/fleet/rollout", headers={"Authorization": f"Bearer {hub.admin}"})
        assert r.status_code == 200, r.text
        [geo] = [models.ChannelRollout.model_validate(x) for x in r.json()]
        schema = (await c.get("/v1/openapi.json")).json()
        assert "/v1/fleet/rollout" in schema["paths"]
        assert "ChannelRollout" in schema["components"]["schemas"]

    assert (geo.dataset, geo.channel, geo.hosts_total) == ("team/geo-db", "stable", 3)
    new, old = geo.versions
    assert new.manifest == v2 and [(s.time, s.hosts) for s in new.steps] == [
        (T0 + 600, 1),
        (T0 + 660, 2),  # edge-b's later report kept its first since
    ]
    assert new.hosts_live == 2 and new.stored_size == size
    store = size + size // 10
    assert new.bytes_by_source == {"store": store, "peers": from_peers, "cache": 0, "local": 4096}
    assert new.store_ratio == pytest.approx(store / size)
    assert [s.hosts for s in old.steps] == [1, 2, 3, 2, 1] and old.hosts_live == 1
    assert old.store_ratio == pytest.approx(3.0)  # every host read all of it from the store

    async with headless_chromium() as browser:
        await browser.go(f"{hub.url}/ui/login?next=/ui/fleet")
        await browser.type_into("#token", hub.admin)
        await browser.click("#login")
        text = await browser.wait_for_text("Rollouts", "edge-c")
        drawn = await browser.script(
            """const out = {};
            for (const v of document.querySelectorAll('section.rollout .version')) {
              const steps = [...v.querySelectorAll('svg.steps circle.step')];
              out[v.dataset.manifest] = {
                steps: steps.map(c => [Number(c.dataset.time), Number(c.dataset.hosts)]),
                line: v.querySelector('svg.steps path.line').getAttribute('d'),
                bars: [...v.querySelectorAll('svg.sources rect.bar')].map(
                  b => [b.dataset.source, Number(b.dataset.bytes), b.getBBox().width]),
                figures: v.querySelector('.figures').innerText,
              };
            }
            return out;"""
        )
        await browser.resize(1200, 1250)  # both versions and the agents' table in the shot
        await browser.screenshot(shots / "fleet-rollout.png")

    assert set(drawn) == {v1, v2}
    assert drawn[v2]["steps"] == [[T0 + 600, 1], [T0 + 660, 2]]
    assert drawn[v1]["steps"] == [
        [T0, 1],
        [T0 + 60, 2],
        [T0 + 120, 3],
        [T0 + 600, 2],
        [T0 + 660, 1],
    ]
    assert drawn[v2]["line"].count("V") == 2  # one rise per step
    bars = drawn[v2]["bars"]
    assert [(s, n) for s, n, _ in bars] == [
        ("store", store),
        ("peers", from_peers),
        ("local", 4096),
    ]
    assert all(width > 0 for _, _, width in bars)  # laid out by the browser, not just markup
    assert bars[0][2] / bars[1][2] == pytest.approx(store / from_peers, rel=0.01)
    figures = drawn[v2]["figures"]
    ratio = f"{store / size:.2f}\N{MULTIPLICATION SIGN}"
    assert "live on 2 / 3 hosts" in figures and ratio in figures, figures
    assert (
        "from peers:" in figures
        and f"({from_peers * 100 / (store + from_peers + 4096):.0f}% of" in figures
    )
    assert "live on 1 / 3 hosts" in drawn[v1]["figures"] and "3.00" in drawn[v1]["figures"]
    assert "team/geo-db:stable" in text and "3 hosts subscribed" in text
    assert "2025-11-24 15:59:27 UTC" in text and "16:11:33 UTC" in text  # the axis, padded
    assert "2025-11-24 16:11:33" not in text  # the end of a same-day axis: the time only
