"""The report an agent sends its hub: the status document, live versions with their bytes."""

from __future__ import annotations

from aetherfs.agent.report import _report


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
