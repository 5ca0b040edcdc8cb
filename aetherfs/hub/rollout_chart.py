"""The fleet page's rollout pictures as numbers for inline SVG (drawn by fleet.html).

The server computes every coordinate from the same series `/v1/fleet/rollout` returns, so the
page needs no script and no asset: it is plain SVG under any Content-Security-Policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aetherfs.hub import models

WIDTH, HEIGHT = 640.0, 150.0  # the step chart's viewBox
LEFT, RIGHT, TOP, BOTTOM = 34.0, 10.0, 10.0, 22.0  # room for the axes' labels
BAR_WIDTH = 640.0


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    time: float
    hosts: int


@dataclass(frozen=True, slots=True)
class Bar:
    source: str
    x: float
    width: float
    bytes: int
    share: float  # of every byte the version took


@dataclass(frozen=True, slots=True)
class VersionChart:
    version: models.VersionRollout
    path: str  # the step line, as an SVG path
    points: tuple[Point, ...]  # one per step
    bars: tuple[Bar, ...]  # one per source that sent bytes
    total_bytes: int
    peers_share: float | None  # bytes from peers over every byte counted


@dataclass(frozen=True, slots=True)
class ChannelChart:
    rollout: models.ChannelRollout
    versions: tuple[VersionChart, ...]
    hosts_axis: int  # the y axis's top
    x0: float  # the plot area
    x1: float
    y0: float  # the zero line
    y1: float
    start_label: str
    end_label: str  # the time only, when the axis ends on the day it starts


def _bars(version: models.VersionRollout) -> tuple[tuple[Bar, ...], int]:
    total = sum(version.bytes_by_source.values())
    bars, x = [], 0.0
    for source, n in version.bytes_by_source.items():
        if n <= 0:
            continue
        width = BAR_WIDTH * n / total
        bars.append(Bar(source, round(x, 2), round(width, 2), n, n / total))
        x += width
    return tuple(bars), total


def chart(rollout: models.ChannelRollout) -> ChannelChart:
    top = max([rollout.hosts_total, 1, *(s.hosts for v in rollout.versions for s in v.steps)])
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    span = (rollout.end - rollout.start) or 1.0

    def x(t: float) -> float:
        return round(x0 + (x1 - x0) * (t - rollout.start) / span, 2)

    def y(hosts: int) -> float:
        return round(y0 - (y0 - y1) * hosts / top, 2)

    versions = []
    for v in rollout.versions:
        points = tuple(Point(x(s.time), y(s.hosts), s.time, s.hosts) for s in v.steps)
        path = [f"M{x0},{y0}"]
        for p in points:
            path.append(f"H{p.x}V{p.y}")
        path.append(f"H{x1}")
        bars, total = _bars(v)
        peers = v.bytes_by_source.get("peers", 0) / total if total else None
        versions.append(VersionChart(v, "".join(path), points, bars, total, peers))
    start, end = time.gmtime(rollout.start), time.gmtime(rollout.end)
    same_day = start[:3] == end[:3]
    return ChannelChart(
        rollout,
        tuple(versions),
        top,
        x0,
        x1,
        y0,
        y1,
        time.strftime("%Y-%m-%d %H:%M:%S UTC", start),
        time.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC", end),
    )
