import random
import tracemalloc

import pytest

from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import ManifestId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.core.packs import MERGE_GAP, plan_reads
from aetherfs.errors import IntegrityError
from aetherfs.planner import PIECE_BYTES, Bitfield, PieceTable
from tests.planner.helpers import GiB, KiB, MiB, big_manifest, contiguous_refs, digest, ref

MID = ManifestId(digest("manifest"))


def test_pieces_are_the_reads_plan_reads_would_make() -> None:
    refs = contiguous_refs(3, 200)  # 3 packs of 200 blocks of 64 KiB
    refs += [
        ref(3, 0, 5000),
        ref(3, 5000 + MERGE_GAP, 100),
        ref(3, 5100 + MERGE_GAP + 1 + MERGE_GAP, 10),
    ]
    table = PieceTable.of_refs(MID, refs)
    reads = sorted(plan_reads(refs, max_range=PIECE_BYTES), key=lambda r: (r.pack, r.start))
    assert len(table) == len(reads)
    for index, read in enumerate(reads):
        assert table.read(index).pack == read.pack
        assert (table.read(index).start, table.read(index).length) == (read.start, read.length)
        assert [b.id for b in table.blocks(index)] == [r.id for r in read.blocks]
        assert table.size(index) == sum(r.stored_size for r in read.blocks)
    assert all(table.read(i).length <= PIECE_BYTES for i in range(len(table)))
    # 200 blocks of 64 KiB: 12.5 MiB, so three full 4 MiB pieces and one of 0.5 MiB per pack.
    assert [table.block_count(i) for i in range(4)] == [64, 64, 64, 8]


def test_the_table_does_not_depend_on_the_order_of_files_and_counts_a_reused_block_once() -> None:
    refs = contiguous_refs(4, 100)
    shuffled = refs * 2  # every block used twice
    random.Random(7).shuffle(shuffled)
    a, b = PieceTable.of_refs(MID, refs), PieceTable.of_refs(MID, shuffled)
    assert a.fingerprint() == b.fingerprint()
    assert len(a) == len(b) and a.total_size == b.total_size == 400 * 64 * KiB
    assert PieceTable.of_refs(MID, refs, piece_bytes=1 * MiB).fingerprint() != a.fingerprint()


def test_a_table_refuses_blocks_laid_over_each_other_or_without_a_pack() -> None:
    with pytest.raises(IntegrityError, match="one offset"):
        PieceTable.of_refs(MID, [ref(0, 0, 100, "a"), ref(0, 0, 100, "b")])
    with pytest.raises(IntegrityError, match="over each other"):
        PieceTable.of_refs(MID, [ref(0, 0, 100), ref(0, 50, 100)])
    with pytest.raises(IntegrityError, match="no pack"):
        PieceTable.of_refs(
            MID, [ref(0, 0, 100).__class__(ref(0, 0, 1).id, bytes(32), 1, bytes(32), 1)]
        )


def test_cut_splits_a_store_read_and_a_peer_payload_into_blocks() -> None:
    refs = [ref(0, 0, 10), ref(0, 10, 20), ref(0, 40, 5)]  # a 10-byte gap before the last
    table = PieceTable.of_refs(MID, refs)
    assert len(table) == 1 and table.read(0).length == 45 and table.size(0) == 35
    span = bytes(range(45))
    ranged = dict(table.cut(0, span, ranged=True))
    assert ranged[refs[2].id] == span[40:45]
    wire = b"".join(ranged[r.id] for r in refs)
    assert dict(table.cut(0, wire, ranged=False)) == ranged
    with pytest.raises(IntegrityError, match="not 35"):
        list(table.cut(0, span, ranged=False))


def test_a_manifest_and_its_refs_give_one_table() -> None:
    refs = contiguous_refs(2, 90)
    entries = (
        FileEntry("a", FILE, size=sum(r.size for r in refs[:100]), blocks=refs[:100]),
        FileEntry("b", FILE, size=sum(r.size for r in refs[50:]), blocks=refs[50:]),
    )
    manifest = Manifest("team/x", 0.0, ChunkParams(), entries)
    assert (
        PieceTable.of_manifest(MID, manifest).fingerprint()
        == PieceTable.of_refs(MID, refs).fingerprint()
    )


def test_a_5_gib_version_and_100_peers_bitfields_stay_small() -> None:
    manifest = big_manifest(5 * GiB)  # 81,920 blocks of 64 KiB in 320 packs
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    table = PieceTable.of_manifest(MID, manifest)
    _, peak = tracemalloc.get_traced_memory()
    fields = [Bitfield.of(len(table), range(n, len(table), 3)) for n in range(100)]
    held = tracemalloc.take_snapshot().compare_to(before, "filename")
    tracemalloc.stop()
    kept = sum(stat.size_diff for stat in held)
    assert len(table) == 1280
    # 40 bytes of records per block (3.3 MB) and 24 bytes per piece; each bitfield 160 bytes.
    assert table.memory_bytes() < 3.5 * MiB
    assert kept < 4 * MiB, kept
    assert peak < 12 * MiB, peak  # while building: 44 bytes per block, one pack sorted at a time
    assert len(fields[0].to_bytes()) == 160
    print(f"5 GiB: {len(table)} pieces, {kept / MiB:.1f} MiB held, build peak {peak / MiB:.1f} MiB")
