"""A version's rollout across the fleet, from the agents' status reports.

Each report says, per subscription, which manifest is live and since when (`live.since`, the
agent's clock) and, where the agent counts them, the bytes that version took by source
(`live.bytes_by_source`, or the report's `versions[]` entry for that manifest): an open set of
names such as `store`, `peers`, `cache`, `local`. A report replaces the last one, so the hub
keeps, per agent, the last HISTORY_LIMIT times a subscription went live on a new manifest
(`hub/agents/ID/rollout.json`): that is all the step chart needs, and the hub stays stateless
over the store.

`record` runs at each report; `rollouts` is pure (histories and the current subscribers in,
series out) and `fleet_rollout` reads both from the store for the page and `/v1/fleet/rollout`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aetherfs.core.ids import ManifestId
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.errors import AetherError, InvalidInput, NotFound
from aetherfs.hub import layout as hub_layout
from aetherfs.hub import models
from aetherfs.store.base import Store

HISTORY_LIMIT = 32  # transitions kept per agent: several versions of a few channels
VERSIONS_SHOWN = 3  # per channel, newest first
MAX_SOURCES = 16  # source names kept per version (reports are caller input)
KNOWN_SOURCES = ("store", "peers", "cache", "local")  # drawn in this order, others after
AXIS_PAD = 0.05  # of the changes' span, before the first and after the last (30 s at least)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")

Channel = tuple[str, str]  # (dataset, channel)


@dataclass(frozen=True, slots=True)
class Live:
    """One agent's subscription went live on a manifest at `since`."""

    dataset: str
    channel: str
    manifest: str
    since: float
    bytes_by_source: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "channel": self.channel,
            "manifest": self.manifest,
            "since": self.since,
            "bytes_by_source": dict(self.bytes_by_source),
        }


@dataclass(frozen=True, slots=True)
class Step:
    time: float
    hosts: int


@dataclass(frozen=True, slots=True)
class VersionRollout:
    manifest: str
    first_live: float
    steps: tuple[Step, ...]  # hosts with this version live, after each change
    hosts_live: int  # now
    bytes_by_source: Mapping[str, int]  # summed over the hosts that counted them
    hosts_counted: int  # hosts whose reports gave this version's bytes by source
    stored_size: int | None = None  # the version's unique blocks on the store (None: unknown)

    @property
    def store_ratio(self) -> float | None:
        """Bytes the fleet read from the store over the version's stored size."""
        if not self.stored_size or "store" not in self.bytes_by_source:
            return None
        return self.bytes_by_source["store"] / self.stored_size


@dataclass(frozen=True, slots=True)
class ChannelRollout:
    dataset: str
    channel: str
    hosts_total: int  # agents subscribed now
    start: float  # the time axis, the same for every version of the channel
    end: float
    versions: tuple[VersionRollout, ...]  # newest first


# Reading reports -----------------------------------------------------------------------------
def _str(value: object, check: Callable[[str], str]) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return check(value)
    except InvalidInput:
        return None


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < 1e11 else None


def _sources(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    found: dict[str, int] = {}
    for name, n in value.items():
        if len(found) >= MAX_SOURCES:
            break
        counts = isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63
        if isinstance(name, str) and _SOURCE.fullmatch(name) and counts:
            found[name] = n
    return found


def _manifest(value: object) -> str | None:
    return value if isinstance(value, str) and _HEX64.fullmatch(value) else None


def _entries(report: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = report.get(key)
    return [e for e in value if isinstance(e, Mapping)] if isinstance(value, list) else []


def subscribed(report: Mapping[str, Any]) -> set[Channel]:
    """The (dataset, channel) pairs a report subscribes to, live or not."""
    found = set()
    for sub in _entries(report, "subscriptions"):
        dataset = _str(sub.get("dataset"), check_dataset_name)
        channel = _str(sub.get("channel"), check_tag)
        if dataset and channel:
            found.add((dataset, channel))
    return found


def lives_in(report: Mapping[str, Any], received: float) -> list[Live]:
    """What a report says is live; `received` stands in for a missing or absurd `since`."""
    by_manifest = {}
    for version in _entries(report, "versions"):
        manifest = _manifest(version.get("manifest"))
        if manifest:
            by_manifest[manifest] = _sources(version.get("bytes_by_source"))
    found = []
    for sub in _entries(report, "subscriptions"):
        dataset = _str(sub.get("dataset"), check_dataset_name)
        channel = _str(sub.get("channel"), check_tag)
        live = sub.get("live")
        if not (dataset and channel and isinstance(live, Mapping)):
            continue
        manifest = _manifest(live.get("manifest"))
        if manifest is None:
            continue
        since = _time(live.get("since"))
        counted = _sources(live.get("bytes_by_source")) or by_manifest.get(manifest, {})
        when = received if since is None else since
        found.append(Live(dataset, channel, manifest, when, counted))
    return found


def merge(history: Sequence[Live], now: Iterable[Live], limit: int = HISTORY_LIMIT) -> list[Live]:
    """The history with what a report says is live now: a new manifest on a subscription is a
    new transition; the same one keeps its first `since` (a restarted agent says it went live
    again) and takes the latest bytes it was told."""
    merged = list(history)
    for live in now:
        last = next(
            (
                i
                for i in range(len(merged) - 1, -1, -1)
                if (merged[i].dataset, merged[i].channel) == (live.dataset, live.channel)
            ),
            None,
        )
        if last is not None and merged[last].manifest == live.manifest:
            held = merged[last]
            merged[last] = replace(
                held,
                since=min(held.since, live.since),
                bytes_by_source=live.bytes_by_source or held.bytes_by_source,
            )
        else:
            merged.append(live)
    return merged[-limit:]


# The store ------------------------------------------------------------------------------------
def history_key(agent_id: str) -> str:
    return f"{hub_layout.AGENTS}{hub_layout.check_agent_id(agent_id)}/rollout.json"


def _parse_history(raw: bytes) -> list[Live]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return []  # damaged: start again from the next report
    entries = doc.get("transitions") if isinstance(doc, dict) else None
    found = []
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict):
            found.extend(lives_in({"subscriptions": [_as_subscription(e)]}, 0.0))
    return found


def _as_subscription(entry: Mapping[str, Any]) -> dict[str, Any]:
    live = {k: entry.get(k) for k in ("manifest", "since", "bytes_by_source")}
    return {"dataset": entry.get("dataset"), "channel": entry.get("channel"), "live": live}


def load_history(store: Store, agent_id: str) -> list[Live]:
    try:
        return _parse_history(store.get(history_key(agent_id)))
    except NotFound:
        return []


def record(store: Store, agent_id: str, received: float, report: Mapping[str, Any]) -> None:
    """Fold one report into the agent's history; written only when it changed."""
    held = load_history(store, agent_id)
    # No more than the history keeps: merging is quadratic in what a report lists.
    merged = merge(held, lives_in(report, received)[:HISTORY_LIMIT])
    if merged != held:
        doc = {"agent": agent_id, "transitions": [live.to_json() for live in merged]}
        store.put(history_key(agent_id), json.dumps(doc).encode())


# The series -----------------------------------------------------------------------------------
def _steps(spans: Sequence[tuple[float, float | None]]) -> tuple[Step, ...]:
    """Hosts live after each change, from each host's [went live, moved on) span."""
    changes: dict[float, int] = {}
    for start, stop in spans:
        changes[start] = changes.get(start, 0) + 1
        if stop is not None:
            changes[stop] = changes.get(stop, 0) - 1
    steps, hosts = [], 0
    for t in sorted(changes):
        if changes[t]:
            hosts += changes[t]
            steps.append(Step(t, hosts))
    return tuple(steps)


def source_order(names: Iterable[str]) -> list[str]:
    known = [s for s in KNOWN_SOURCES if s in names]
    return known + sorted(set(names) - set(known))


def rollouts(
    histories: Mapping[str, Sequence[Live]],
    subscriptions: Mapping[str, set[Channel]],
    until: float,
    stored_size: Callable[[str, str], int | None] = lambda dataset, manifest: None,
) -> list[ChannelRollout]:
    """Per subscribed channel, its newest versions' rollouts. `histories` and `subscriptions`
    are by agent; only agents subscribed now count. The time axis runs from the first change
    to the last, padded; `until` stands for both where nothing went live yet."""
    channels: dict[Channel, list[str]] = {}
    for agent, subs in subscriptions.items():
        for pair in subs:
            channels.setdefault(pair, []).append(agent)
    found = []
    for (dataset, channel), agents in sorted(channels.items()):
        spans: dict[str, list[tuple[float, float | None]]] = {}
        counted: dict[str, list[Mapping[str, int]]] = {}
        live_now: dict[str, int] = {}
        for agent in agents:
            held = histories.get(agent, ())
            moves = sorted(
                (h for h in held if (h.dataset, h.channel) == (dataset, channel)),
                key=lambda h: h.since,
            )
            for i, move in enumerate(moves):
                stop = moves[i + 1].since if i + 1 < len(moves) else None
                spans.setdefault(move.manifest, []).append((move.since, stop))
                if move.bytes_by_source:
                    counted.setdefault(move.manifest, []).append(move.bytes_by_source)
            if moves:
                live_now[moves[-1].manifest] = live_now.get(moves[-1].manifest, 0) + 1
        versions = []
        for manifest, lived in spans.items():
            totals: dict[str, int] = {}
            for figures in counted.get(manifest, []):
                for source, n in figures.items():
                    totals[source] = totals.get(source, 0) + n
            versions.append(
                VersionRollout(
                    manifest=manifest,
                    first_live=min(start for start, _ in lived),
                    steps=_steps(lived),
                    hosts_live=live_now.get(manifest, 0),
                    bytes_by_source={s: totals[s] for s in source_order(totals)},
                    hosts_counted=len(counted.get(manifest, [])),
                    stored_size=stored_size(dataset, manifest),
                )
            )
        versions.sort(key=lambda v: v.first_live, reverse=True)
        shown = tuple(versions[:VERSIONS_SHOWN])
        times = [s.time for v in shown for s in v.steps]
        first, last = min(times, default=until), max(times, default=until)
        pad = max((last - first) * AXIS_PAD, 30.0) if times else 0.0
        found.append(ChannelRollout(dataset, channel, len(agents), first - pad, last + pad, shown))
    return found


def fleet_rollout(
    store: Store,
    reports: Sequence[tuple[str, float, Mapping[str, Any]]],
    open_stored_size: Callable[[str, ManifestId], int],
) -> list[ChannelRollout]:
    """From the agents' last reports (agent, received, report) and their histories on the
    store; `open_stored_size(dataset, manifest)` may fail (no key, no manifest): unknown."""
    sizes: dict[tuple[str, str], int | None] = {}

    def stored_size(dataset: str, manifest: str) -> int | None:
        if (dataset, manifest) not in sizes:
            try:
                sizes[dataset, manifest] = open_stored_size(dataset, ManifestId.from_hex(manifest))
            except AetherError:
                sizes[dataset, manifest] = None
        return sizes[dataset, manifest]

    histories = {agent: load_history(store, agent) for agent, _, _ in reports}
    subs = {agent: subscribed(report) for agent, _, report in reports}
    until = max((received for _, received, _ in reports), default=0.0)
    return rollouts(histories, subs, until, stored_size)


def as_model(found: ChannelRollout) -> models.ChannelRollout:
    return models.ChannelRollout(
        dataset=found.dataset,
        channel=found.channel,
        hosts_total=found.hosts_total,
        start=found.start,
        end=found.end,
        versions=[
            models.VersionRollout(
                manifest=v.manifest,
                first_live=v.first_live,
                hosts_live=v.hosts_live,
                steps=[models.RolloutStep(time=s.time, hosts=s.hosts) for s in v.steps],
                bytes_by_source=dict(v.bytes_by_source),
                hosts_counted=v.hosts_counted,
                stored_size=v.stored_size,
                store_ratio=v.store_ratio,
            )
            for v in found.versions
        ],
    )
