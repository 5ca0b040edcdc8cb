"""One contract, both backends: the local directory and S3 (a real SeaweedFS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetherfs.errors import Conflict, NotFound
from aetherfs.store.base import Store
from aetherfs.store.local import LocalStore
from aetherfs.store.s3 import S3Settings, S3Store
from tests.fixtures.seaweedfs import SeaweedFS


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
    else:
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        yield S3Store(S3Settings(server.bucket, server.new_prefix(), server.endpoint))


def test_put_get_exists_list_delete(store: Store) -> None:
    assert not store.exists("blocks/aa/x")
    with pytest.raises(NotFound):
        store.get("blocks/aa/x")
    store.put("blocks/aa/x", b"hello")
    store.put("blocks/ab/y", b"world!")
    assert store.get("blocks/aa/x") == b"hello"
    assert store.get_range("blocks/ab/y", 1, 3) == b"orl"
    assert store.size("blocks/ab/y") == 6
    assert abs(store.mtime("blocks/ab/y") - time.time()) < 60
    assert list(store.list("blocks/")) == ["blocks/aa/x", "blocks/ab/y"]
    assert list(store.list("blocks/ab")) == ["blocks/ab/y"]
    store.delete("blocks/aa/x")
    assert not store.exists("blocks/aa/x")


def test_put_if_absent(store: Store) -> None:
    assert store.put_if_absent("k", b"first")
    assert not store.put_if_absent("k", b"second")
    assert store.get("k") == b"first"


def test_compare_and_swap(store: Store) -> None:
    v1 = store.put_if_version("tag", b"one", None)
    with pytest.raises(Conflict):
        store.put_if_version("tag", b"two", None)
    v2 = store.put_if_version("tag", b"two", v1)
    with pytest.raises(Conflict):
        store.put_if_version("tag", b"three", v1)  # stale version
    assert store.get_versioned("tag").version == v2
    assert store.get("tag") == b"two"


def test_racing_writers_lose_no_update(store: Store) -> None:
    """Threads each append their id to one object by CAS: every append survives."""
    store.put_if_version("counter", b"", None)
    writers, rounds = 4, 5

    def writer(n: int) -> None:
        for i in range(rounds):
            while True:
                current = store.get_versioned("counter")
                try:
                    store.put_if_version(
                        "counter", current.data + f"{n}.{i},".encode(), current.version
                    )
                    break
                except Conflict:
                    continue

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = store.get("counter").decode().strip(",").split(",")
    assert sorted(entries) == sorted(f"{n}.{i}" for n in range(writers) for i in range(rounds))
