"""The push's table of blocks on the store: on disk, in order, removed when closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aetherfs.core.blocklist import BlockList, record_of
from aetherfs.core.blocks import seal_block
from aetherfs.core.ids import PackId
from aetherfs.ops.located import LocatedBlocks

PACK = PackId(b"\7" * 32)


def records(count: int) -> list[bytes]:
    refs = [seal_block(f"block {i}".encode(), bytes(32)).ref for i in range(count)]
    return [record_of(ref.located(PACK, i * 100)) for i, ref in enumerate(refs)]


def test_records_come_back_in_the_order_asked(tmp_path: Path) -> None:
    made = records(1200)  # more than one SELECT's worth of ids
    with LocatedBlocks(tmp_path) as located:
        located.add(made)
        located.add(made[:3])  # known twice: kept once
        order = [made[5], made[1100], made[5], made[0]]
        ids = b"".join(r[:32] for r in order)
        assert located.records(ids) == b"".join(order)
        assert made[7][:32] in located and b"\0" * 32 not in located
        assert BlockList.from_records(located.records(ids))[0].offset == 500
        with pytest.raises(KeyError):
            located.records(b"\1" * 32)
        located.note_used(ids)
        located.note_used(made[0][:32])
        assert located.used_count() == 3
        assert len(list(tmp_path.iterdir())) == 1
    assert list(tmp_path.iterdir()) == []  # the scratch table is gone
