import os

from aetherfs.core.blocks import seal_block
from aetherfs.core.chunking import ChunkParams, choose_params
from aetherfs.core.ids import PackId
from aetherfs.core.packs import PackBuilder, plan_reads

SECRET = bytes(32)


def test_pack_locates_each_block_and_ranges_cut_them_back() -> None:
    builder = PackBuilder()
    blocks = [seal_block(os.urandom(1000 + i), SECRET) for i in range(5)]
    for block in blocks:
        builder.add(block)
    pack_id, data, located = builder.seal()
    assert pack_id == PackId.of(data)
    reads = plan_reads(located.values())
    assert len(reads) == 1  # contiguous: one ranged GET
    cut = dict((ref.id, stored) for ref, stored in reads[0].cut(data[reads[0].start :]))
    assert cut == {b.ref.id: b.stored for b in blocks}


def test_gaps_and_packs_split_reads() -> None:
    a, b = PackId(b"\1" * 32), PackId(b"\2" * 32)
    refs = [seal_block(os.urandom(100 + i), SECRET).ref for i in range(4)]
    located = [
        refs[0].located(a, 0),
        refs[1].located(a, refs[0].stored_size),  # adjacent: merged
        refs[2].located(a, 1_000_000),  # far: its own read
        refs[3].located(b, 0),  # other pack
    ]
    reads = plan_reads(located)
    assert [len(r.blocks) for r in reads] == [2, 1, 1]
    assert reads[0].length == refs[0].stored_size + refs[1].stored_size


def test_sqlite_files_are_cut_on_their_pages() -> None:
    header = b"SQLite format 3\x00" + (4096).to_bytes(2, "big") + bytes(82)
    assert choose_params(header) == ChunkParams.fixed(4096)
    big_pages = b"SQLite format 3\x00" + (1).to_bytes(2, "big") + bytes(82)
    assert choose_params(big_pages) == ChunkParams.fixed(65536)
    assert choose_params(b"plain text") == ChunkParams()
    assert choose_params(b"SQLite format 3\x00" + b"\x00\x07") == ChunkParams()  # bad page size


def test_a_reused_buffer_builds_each_pack_anew() -> None:
    buffer = bytearray()
    big = [seal_block(os.urandom(5000 + i), SECRET) for i in range(3)]
    first = PackBuilder(buffer)
    for block in big:
        first.add(block)
    first_id, first_data, _ = first.seal()
    # A smaller pack in the same (now larger) buffer: only its own bytes are in it.
    small = [seal_block(os.urandom(100 + i), SECRET) for i in range(2)]
    second = PackBuilder(buffer)
    for block in small:
        second.add(block)
    pack_id, view, located = second.seal_in_place()
    with view:
        assert bytes(view) == b"".join(b.stored for b in small)
        assert pack_id == PackId.of(view) != first_id
        assert [located[b.ref.id].offset for b in small] == [0, small[0].ref.stored_size]
    assert first_data == b"".join(b.stored for b in big)
