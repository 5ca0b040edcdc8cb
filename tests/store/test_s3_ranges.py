"""Block reads on S3 take a short path (SigV4 by hand, urllib3): it must fail as boto3 does."""

from __future__ import annotations

import os
import time

import pytest

from aetherfs.errors import NotFound, StoreUnavailable
from aetherfs.store.s3 import S3Settings, S3Store
from tests.fixtures.faulty_s3 import faulty_s3
from tests.fixtures.ports import free_port
from tests.fixtures.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3

DATA = os.urandom(300_000)


def written(server: SeaweedFS) -> tuple[str, str]:
    """A fresh prefix holding one object `packs/x`: (prefix, key)."""
    prefix = server.new_prefix()
    S3Store(S3Settings(server.bucket, prefix, server.endpoint)).put("packs/x", DATA)
    return prefix, "packs/x"


def test_ranged_reads_take_the_short_path(seaweedfs: SeaweedFS) -> None:
    prefix, key = written(seaweedfs)
    store = S3Store(S3Settings(seaweedfs.bucket, prefix, seaweedfs.endpoint))
    assert store.ranges is not None
    assert store.get_range(key, 1000, 65_536) == DATA[1000:66_536]
    assert store.get_range(key, 299_990, 100) == DATA[299_990:]  # the object ends first
    with pytest.raises(NotFound, match="packs/none is not in the store"):
        store.get_range("packs/none", 0, 10)
    assert store.requests["get_object"] == 3


def test_whole_gets_take_the_short_path_and_make_no_boto3_client(seaweedfs: SeaweedFS) -> None:
    """What a pull reads first (tags, keyring, manifest): no boto3 client is made for it."""
    prefix, key = written(seaweedfs)
    store = S3Store(S3Settings(seaweedfs.bucket, prefix, seaweedfs.endpoint))
    assert store.get(key) == DATA
    assert store.get_range(key, 0, 10) == DATA[:10]
    with pytest.raises(NotFound, match="packs/none is not in the store"):
        store.get("packs/none")
    assert store._client is None
    assert store.requests["get_object"] == 3
    store.put("packs/y", b"y")  # anything else makes it, once
    assert store._client is not None and store.client is store._client
    assert store.get("packs/y") == b"y"


def test_whole_gets_are_retried_and_fail_clearly(seaweedfs: SeaweedFS) -> None:
    prefix, key = written(seaweedfs)
    with faulty_s3(seaweedfs.endpoint) as proxy:
        store = S3Store(S3Settings(seaweedfs.bucket, prefix, proxy.endpoint))
        proxy.faults.fail_next = 2
        assert store.get(key) == DATA
        assert proxy.faults.requests == 3
        proxy.faults.fail_next = 100
        with pytest.raises(StoreUnavailable, match=r"refused packs/x: SlowDown"):
            store.get(key)


def test_server_errors_are_retried(seaweedfs: SeaweedFS) -> None:
    prefix, key = written(seaweedfs)
    with faulty_s3(seaweedfs.endpoint) as proxy:
        store = S3Store(S3Settings(seaweedfs.bucket, prefix, proxy.endpoint))
        proxy.faults.fail_next = 2
        assert store.get_range(key, 10, 20) == DATA[10:30]
        assert proxy.faults.requests == 3


def test_a_server_that_keeps_failing_is_a_clear_error(seaweedfs: SeaweedFS) -> None:
    prefix, key = written(seaweedfs)
    with faulty_s3(seaweedfs.endpoint) as proxy:
        store = S3Store(S3Settings(seaweedfs.bucket, prefix, proxy.endpoint))
        proxy.faults.fail_next = 100
        with pytest.raises(StoreUnavailable, match=r"refused packs/x: SlowDown"):
            store.get_range(key, 10, 20)
        assert proxy.faults.requests == 5  # the first try and four retries


def test_a_server_that_ignores_ranges_still_gives_the_range(seaweedfs: SeaweedFS) -> None:
    prefix, key = written(seaweedfs)
    with faulty_s3(seaweedfs.endpoint) as proxy:
        store = S3Store(S3Settings(seaweedfs.bucket, prefix, proxy.endpoint))
        proxy.faults.whole_object = DATA
        assert store.get_range(key, 5000, 123) == DATA[5000:5123]


def test_an_unreachable_server_is_a_clear_error() -> None:
    store = S3Store(S3Settings("bucket", "p", f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach the store s3://bucket/p/"):
        store.get_range("packs/x", 0, 10)
    with pytest.raises(StoreUnavailable, match="cannot reach the store s3://bucket/p/"):
        store.get("packs/x")
    assert time.monotonic() - started < 30


def test_a_proxy_for_the_endpoint_keeps_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = "http://127.0.0.1:9"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert S3Store(S3Settings("bucket", "p", endpoint)).ranges is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert S3Store(S3Settings("bucket", "p", endpoint)).ranges is not None
    # Plain AWS (no endpoint) is left to boto3, which knows its addressing rules.
    assert S3Store(S3Settings("bucket", "p", None)).ranges is None
