"""BlockList: a file's blocks as compact records, equal to the BlockRefs they hold."""

import msgpack
import pytest

from aetherfs.core.blocklist import BlockList, pack_record
from aetherfs.core.blocks import BlockRef, seal_block
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import PackId
from aetherfs.core.manifest import FILE, FileEntry, Manifest, decode, encode
from aetherfs.errors import IntegrityError

PACK = PackId(b"\7" * 32)


def refs(count: int, packed: bool = True) -> list[BlockRef]:
    out = []
    for i in range(count):
        ref = seal_block(f"block {i}".encode() * 100, bytes(32)).ref
        out.append(ref.located(PACK, i * 1000 + 2**33) if packed else ref)
    return out


def test_holds_exactly_the_refs_given() -> None:
    given = refs(5)
    blocks = BlockList(given)
    assert len(blocks) == 5
    assert list(blocks) == given
    assert blocks[0] == given[0] and blocks[-1] == given[-1]
    assert list(blocks[1:3]) == given[1:3]
    assert blocks == tuple(given) and tuple(given) == blocks
    assert blocks == BlockList(given) and hash(blocks) == hash(BlockList(given))
    assert blocks != BlockList(given[:4])
    with pytest.raises(IndexError):
        blocks[5]


def test_unpacked_refs_keep_no_pack() -> None:
    given = refs(2, packed=False)
    assert [ref.pack for ref in BlockList(given)] == [None, None]
    assert list(BlockList(given)) == given


def test_file_entries_compare_whatever_sequence_they_were_given() -> None:
    given = refs(3)
    size = sum(ref.size for ref in given)
    as_tuple = FileEntry("a", FILE, 0o644, size, tuple(given))
    as_list = FileEntry("a", FILE, 0o644, size, list(given))
    assert isinstance(as_tuple.blocks, BlockList)
    assert as_tuple == as_list and hash(as_tuple) == hash(as_list)


@pytest.mark.parametrize(
    "field, value",
    [(0, b"short id"), (1, "not bytes"), (2, 2**40), (4, -1), (5, b"\1" * 31), (6, -5)],
)
def test_a_malformed_block_in_a_manifest_is_refused(field: int, value: object) -> None:
    ref = refs(1)[0]
    manifest = Manifest(
        "team/geo", 1.0, ChunkParams(), (FileEntry("a", FILE, 0o644, ref.size, (ref,)),)
    )
    document = msgpack.unpackb(encode(manifest))
    document["files"][0]["b"][0][field] = value
    with pytest.raises(IntegrityError, match="malformed"):
        decode(msgpack.packb(document, use_bin_type=True))


def test_records_check_their_fields() -> None:
    with pytest.raises(ValueError, match="id must be 32 bytes"):
        pack_record(b"x", bytes(32), bytes(32), None, 1, 1, 0)
    with pytest.raises(ValueError, match="out of range"):
        pack_record(bytes(32), bytes(32), bytes(32), None, 2**32, 1, 0)
    with pytest.raises(ValueError, match="whole"):
        BlockList.from_records(b"\0" * 10)
