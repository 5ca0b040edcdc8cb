"""Prometheus metrics, drawn from the agent's state at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from aetherfs.agent.ports import StatusView


class _StateCollector(Collector):
    def __init__(self, state: StatusView) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        snap = self.state.snapshot()
        fetched = CounterMetricFamily(
            "aetherfs_agent_fetched_bytes",
            "Stored block bytes fetched, by source",
            labels=["source"],
        )
        blocks = CounterMetricFamily(
            "aetherfs_agent_fetched_blocks", "Blocks fetched, by source", labels=["source"]
        )
        for source, n in snap["bytes_by_source"].items():
            fetched.add_metric([source], n)
        for source, n in snap["blocks_by_source"].items():
            blocks.add_metric([source], n)
        yield fetched
        yield blocks
        yield from _peer_metrics(snap)
        cache = snap["cache"]
        yield GaugeMetricFamily(
            "aetherfs_agent_cache_bytes", "Bytes in the block cache", cache["bytes"]
        )
        yield GaugeMetricFamily("aetherfs_agent_cache_limit_bytes", "Cache bound", cache["limit"])
        yield CounterMetricFamily(
            "aetherfs_agent_cache_corrupt_dropped",
            "Cache blocks found altered and dropped",
            cache["corrupt_dropped"],
        )
        yield from _disk_metrics(snap)
        live = GaugeMetricFamily(
            "aetherfs_agent_channel_live",
            "1 when the channel has a live version",
            labels=["subscription", "manifest"],
        )
        downloading = GaugeMetricFamily(
            "aetherfs_agent_channel_download_fraction",
            "Fraction of the version being downloaded that is written",
            labels=["subscription"],
        )
        retries = GaugeMetricFamily(
            "aetherfs_agent_channel_retries", "Consecutive failed checks", labels=["subscription"]
        )
        for ch in snap["subscriptions"]:
            manifest = ch["live"]["manifest"] if ch["live"] else ""
            live.add_metric([ch["subscription"], manifest], 1 if manifest else 0)
            progress = ch["progress"]
            downloading.add_metric([ch["subscription"]], progress["fraction"] if progress else 0)
            retries.add_metric([ch["subscription"]], ch["retries"])
        yield live
        yield downloading
        yield retries
        reads = CounterMetricFamily(
            "aetherfs_agent_file_reads", "Files served over HTTP", labels=["subscription", "path"]
        )
        for row in snap["file_reads"]:
            reads.add_metric([row["ref"], row["path"]], row["reads"])
        yield reads
        yield GaugeMetricFamily("aetherfs_agent_uptime_seconds", "Uptime", snap["agent"]["uptime"])


def render_metrics(state: StatusView) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(_StateCollector(state))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _peer_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    """Peer exchange: per peer bytes and errors, per version bytes by source and still needed."""
    sent = CounterMetricFamily(
        "aetherfs_agent_peer_sent_bytes", "Bytes sent to a peer", labels=["peer", "state"]
    )
    received = CounterMetricFamily(
        "aetherfs_agent_peer_received_bytes", "Bytes received from a peer", labels=["peer", "state"]
    )
    errors = CounterMetricFamily(
        "aetherfs_agent_peer_errors", "Connections to a peer ended in an error", labels=["peer"]
    )
    for p in snap["peers"]:
        sent.add_metric([p["id"], p["state"]], p["bytes_sent"])
        received.add_metric([p["id"], p["state"]], p["bytes_received"])
        errors.add_metric([p["id"]], p["errors"])
    by_source = GaugeMetricFamily(
        "aetherfs_agent_version_bytes",
        "A version's bytes by source (cache, peers, store)",
        labels=["manifest", "source"],
    )
    needed = GaugeMetricFamily(
        "aetherfs_agent_version_needed_bytes", "A version's bytes still needed", labels=["manifest"]
    )
    reads = CounterMetricFamily(
        "aetherfs_agent_version_store_reads", "A version's store reads", labels=["manifest"]
    )
    manifest_bytes = GaugeMetricFamily(
        "aetherfs_agent_version_manifest_bytes",
        "A version's sealed manifest, bytes by where it came from (peers, store, local)",
        labels=["manifest", "source"],
    )
    for f in snap["fetches"]:
        for source, n in f["bytes"].items():
            by_source.add_metric([f["manifest"], source], n)
        for source, n in f.get("manifest_from", {}).items():
            manifest_bytes.add_metric([f["manifest"], source], n)
        needed.add_metric([f["manifest"]], f["bytes_needed"])
        reads.add_metric([f["manifest"]], f["store_reads"])
    yield from (sent, received, errors, by_source, needed, reads, manifest_bytes)
    caps = GaugeMetricFamily(
        "aetherfs_agent_bandwidth_cap_bytes_per_second",
        "A bandwidth cap of peer exchange (absent: uncapped)",
        labels=["direction"],
    )
    for direction, rate in (snap["peer_exchange"].get("bandwidth") or {}).items():
        if rate:
            caps.add_metric([direction], rate)
    yield caps
    yield GaugeMetricFamily(
        "aetherfs_agent_peers_enabled",
        "1 if peer exchange runs",
        1 if snap["peer_exchange"].get("enabled") else 0,
    )


def _disk_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    """Bytes on disk (cache, trees) and blocks served to peers by where they came from."""
    on_disk = GaugeMetricFamily(
        "aetherfs_agent_disk_bytes", "Bytes allocated on disk, by part", labels=["part"]
    )
    on_disk.add_metric(["cache"], snap["cache"].get("disk_bytes", 0))
    on_disk.add_metric(["trees"], snap["trees"]["bytes"])
    yield on_disk
    served = snap.get("served") or {}
    blocks = CounterMetricFamily(
        "aetherfs_agent_served_blocks",
        "Blocks served to peers, by source (cache: as stored; tree: sealed again)",
        labels=["source"],
    )
    size = CounterMetricFamily(
        "aetherfs_agent_served_bytes", "Bytes served to peers, by source", labels=["source"]
    )
    for source in ("cache", "tree"):
        blocks.add_metric([source], served.get(f"{source}_blocks", 0))
        size.add_metric([source], served.get(f"{source}_bytes", 0))
    yield blocks
    yield size
    refused = CounterMetricFamily(
        "aetherfs_agent_tree_refused_blocks",
        "Blocks a tree could not serve: altered on disk, or sealed again to other bytes",
        labels=["reason"],
    )
    refused.add_metric(["altered"], served.get("altered", 0))
    refused.add_metric(["mismatched"], served.get("mismatched", 0))
    yield refused
