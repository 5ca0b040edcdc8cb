"""A BlockList whose records are in a spool file reads exactly like one held in memory."""

import threading

import pytest

from aetherfs.core import blocklist
from aetherfs.core.blocklist import BlockList
from aetherfs.core.blocks import seal_block
from aetherfs.core.ids import PackId
from aetherfs.repository.spool import FileRecordSpool


def refs(count: int, pack: bytes = b"\5" * 32) -> list[object]:
    return [
        seal_block(i.to_bytes(4, "big") * (i % 5 + 1), bytes(32)).ref.located(PackId(pack), i)
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 5, 11])
def test_spooled_and_in_memory_lists_agree(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocklist, "RUN_RECORDS", 3)  # several runs per list
    held = BlockList(refs(count))  # type: ignore[arg-type]
    spool = FileRecordSpool()
    spool.append(b"x" * 17)  # the list does not start at the beginning of its spool
    start = spool.append(held.records)
    spool.append(b"y" * 31)
    on_disk = BlockList.spooled(spool, start, len(held.records))
    assert on_disk.on_disk and not held.on_disk
    assert len(on_disk) == len(held) == count
    assert on_disk == held and hash(on_disk) == hash(held)
    assert list(on_disk) == list(held)
    assert list(on_disk.iter_records()) == list(held.iter_records())
    assert on_disk.total_size() == held.total_size()
    assert list(on_disk.digests_and_sizes()) == list(held.digests_and_sizes())
    assert list(on_disk.wire_fields()) == list(held.wire_fields())
    assert [on_disk[i] for i in range(-count, count)] == [held[i] for i in range(-count, count)]
    assert on_disk[1:4] == held[1:4]
    with pytest.raises(IndexError):
        on_disk[count]


def test_a_spool_is_read_from_many_threads_while_appended_to() -> None:
    spool = FileRecordSpool()
    lists = []
    for n in range(20):
        held = BlockList(refs(n + 1))  # type: ignore[arg-type]
        lists.append(
            (held, BlockList.spooled(spool, spool.append(held.records), len(held.records)))
        )
    failures: list[BaseException] = []

    def read_all() -> None:
        try:
            for held, on_disk in lists:
                assert list(on_disk.iter_records()) == list(held.iter_records())
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=read_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    spool.append(b"z" * 1000)
    for thread in threads:
        thread.join()
    assert not failures


def test_a_read_past_the_end_is_refused() -> None:
    spool = FileRecordSpool()
    start = spool.append(b"a" * 144)
    with pytest.raises(ValueError):
        BlockList.spooled(spool, start, 100)  # not whole records
    with pytest.raises(ValueError):
        list(BlockList.spooled(spool, start, 288))
