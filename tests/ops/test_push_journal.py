"""The push journal: entries survive as written, a torn tail is dropped, one push holds it."""

from __future__ import annotations

import os
from pathlib import Path

from aetherfs.core.blocklist import RECORD_SIZE
from aetherfs.core.ids import PackId
from aetherfs.ops.push_journal import JournalEntry, PushJournal, journal_path


def entry(n: int, blocks: int = 3) -> JournalEntry:
    return JournalEntry(PackId(bytes([n]) * 32), 1000 + n, os.urandom(RECORD_SIZE * blocks))


def test_entries_come_back_and_a_torn_tail_is_dropped(tmp_path: Path) -> None:
    journal = PushJournal.open(tmp_path, "store-1", "team/geo")
    assert journal is not None and journal.entries == []
    first, second = entry(1), entry(2)
    journal.record(first)
    journal.record(second)
    journal.close()
    path = journal_path(tmp_path, "store-1", "team/geo")
    assert path == tmp_path / "store-1" / "team+geo.journal"
    # A kill in the middle of the next append: half an entry at the end.
    with path.open("ab") as f:
        f.write(entry(3).to_bytes()[:100])
    again = PushJournal.open(tmp_path, "store-1", "team/geo")
    assert again is not None
    assert again.entries == [first, second]
    assert list(again.entries[0].iter_records()) == [
        first.records[i : i + RECORD_SIZE] for i in range(0, 3 * RECORD_SIZE, RECORD_SIZE)
    ]
    third = entry(4)
    again.record(third)  # written where the torn entry began
    again.close()
    reread = PushJournal.open(tmp_path, "store-1", "team/geo")
    assert reread is not None and reread.entries == [first, second, third]
    reread.close()


def test_a_damaged_entry_ends_what_is_trusted(tmp_path: Path) -> None:
    journal = PushJournal.open(tmp_path, "s", "geo")
    assert journal is not None
    written = [entry(n) for n in range(3)]
    for one in written:
        journal.record(one)
    journal.close()
    path = journal_path(tmp_path, "s", "geo")
    data = bytearray(path.read_bytes())
    data[len(written[0].to_bytes()) + 60] ^= 1  # inside the second entry's records
    path.write_bytes(bytes(data))
    reopened = PushJournal.open(tmp_path, "s", "geo")
    assert reopened is not None and reopened.entries == written[:1]


def test_keep_only_and_finish(tmp_path: Path) -> None:
    journal = PushJournal.open(tmp_path, "s", "geo")
    assert journal is not None
    kept = entry(7)
    journal.record(entry(6))
    journal.record(kept)
    journal.keep_only([kept])
    journal.close()
    reopened = PushJournal.open(tmp_path, "s", "geo")
    assert reopened is not None and reopened.entries == [kept]
    reopened.finish()
    assert not journal_path(tmp_path, "s", "geo").exists()


def test_a_second_push_of_the_dataset_runs_without_the_journal(tmp_path: Path) -> None:
    held = PushJournal.open(tmp_path, "s", "geo")
    assert held is not None
    assert PushJournal.open(tmp_path, "s", "geo") is None  # flock held by the first
    assert PushJournal.open(tmp_path, "s", "other") is not None
    held.close()
    assert PushJournal.open(tmp_path, "s", "geo") is not None
