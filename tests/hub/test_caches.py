"""The hub's in-memory caches: bounded, least recently used out first, expiring, thread-safe."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from aetherfs.core.blocks import BlockRef, seal_block
from aetherfs.core.ids import BlockId
from aetherfs.hub.caches import Lru
from aetherfs.hub.versions import BlockLru


def test_lru_drops_the_least_recently_used_and_what_matches() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now "b" is the least recently used
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)
    lru.drop(lambda key: key == "a")
    assert lru.get("a") is None and lru.get("c") == 3


def test_lru_entries_expire_after_their_ttl_and_a_zero_ttl_keeps_nothing() -> None:
    lru: Lru[str, int] = Lru(8, ttl=0.2)
    lru.put("a", 1)
    assert lru.get("a") == 1
    time.sleep(0.25)
    assert lru.get("a") is None
    lru.put("a", 2)  # put again: a fresh lifetime
    assert lru.get("a") == 2

    never: Lru[str, int] = Lru(8, ttl=0)
    never.put("a", 1)
    assert never.get("a") is None


def test_lru_holds_under_many_threads() -> None:
    lru: Lru[int, int] = Lru(16, ttl=60)
    errors: list[BaseException] = []

    def churn(offset: int) -> None:
        try:
            for i in range(5_000):
                lru.put((i + offset) % 40, i)
                lru.get((i * 7 + offset) % 40)
                if i % 500 == 0:
                    lru.drop(lambda key: key % 3 == 0)
        except BaseException as error:  # pragma: no cover - what the test looks for
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_block_lru_is_bounded_in_bytes_and_serves_hits_without_reading() -> None:
    sealed = [seal_block(bytes([i]) * 3000, b"s" * 32) for i in range(5)]
    plain = {b.ref.id: bytes([i]) * 3000 for i, b in enumerate(sealed)}
    asked: list[BlockId] = []

    def read(dataset: str, refs: Sequence[BlockRef]) -> dict[BlockId, bytes]:
        assert dataset == "team/x"
        asked.extend(ref.id for ref in refs)
        return {ref.id: plain[ref.id] for ref in refs}

    refs = [b.ref for b in sealed]
    blocks = BlockLru(read, limit=12_000)  # room for four blocks of 3,000 bytes
    assert blocks("team/x", refs[:3]) == {ref.id: plain[ref.id] for ref in refs[:3]}
    assert blocks("team/x", refs[:1]) == {refs[0].id: plain[refs[0].id]}
    assert asked == [ref.id for ref in refs[:3]]  # the hit was not read again
    blocks("team/x", refs[3:5])  # 15,000 bytes: the least recently used (the second) goes
    asked.clear()
    blocks("team/x", refs)
    assert asked == [refs[1].id]

    small = BlockLru(read, limit=7_000)  # a block over a quarter of the limit is never kept
    asked.clear()
    small("team/x", refs[:1])
    small("team/x", refs[:1])
    assert asked == [refs[0].id, refs[0].id]
