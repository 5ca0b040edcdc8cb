from pathlib import Path

import pytest

from aetherfs.core import crypto
from aetherfs.core.blocks import seal_block
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.manifest import (
    DIRECTORY,
    FILE,
    MAGIC_ONE_SHOT,
    SYMLINK,
    FileEntry,
    Manifest,
    _aad,
    encode,
    open_manifest,
    seal_manifest,
)
from aetherfs.errors import IntegrityError

KEY = bytes(range(32))


def manifest(*files: FileEntry, dataset: str = "team/geo") -> Manifest:
    return Manifest(dataset, 1.0, ChunkParams(), files)


PACK = PackId(b"\5" * 32)


def a_file(path: str) -> FileEntry:
    block = seal_block(b"hello", bytes(32))
    return FileEntry(path, FILE, 0o644, 5, (block.ref.located(PACK, 0),))


def test_round_trip() -> None:
    m = manifest(
        a_file("a/b.txt"),
        FileEntry("a", DIRECTORY, 0o755),
        FileEntry("l", SYMLINK, 0o777, target="a/b.txt"),
    )
    manifest_id, stored = seal_manifest(m, KEY)
    assert ManifestId.of(stored) == manifest_id
    assert open_manifest(manifest_id, stored, "team/geo", KEY) == m


def test_a_files_zstd_level_round_trips_and_is_left_out_at_the_default() -> None:
    pinned = FileEntry("a.db", FILE, 0o644, 5, a_file("x").blocks, level=6)
    m = manifest(pinned, a_file("b.txt"))
    manifest_id, stored = seal_manifest(m, KEY)
    opened = open_manifest(manifest_id, stored, "team/geo", KEY)
    assert [e.level for e in opened.files] == [6, None]
    assert b'"z"' not in encode(manifest(a_file("b.txt")))


def test_manifest_is_encrypted() -> None:
    _, stored = seal_manifest(manifest(a_file("very-secret-name.db")), KEY)
    assert b"very-secret-name" not in stored


def test_altered_manifest_is_refused() -> None:
    manifest_id, stored = seal_manifest(manifest(a_file("x")), KEY)
    altered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(IntegrityError, match="altered"):
        open_manifest(manifest_id, altered, "team/geo", KEY)


def test_wrong_key_is_a_clear_error() -> None:
    manifest_id, stored = seal_manifest(manifest(a_file("x")), KEY)
    with pytest.raises(IntegrityError, match="wrong key"):
        open_manifest(manifest_id, stored, "team/geo", bytes(32))


def test_manifest_bound_to_its_dataset() -> None:
    manifest_id, stored = seal_manifest(manifest(a_file("x")), KEY)
    with pytest.raises(IntegrityError):
        open_manifest(manifest_id, stored, "team/other", KEY)


@pytest.mark.parametrize("path", ["../x", "/etc/x", "a/../../x", "a//b", "./a", "a/", ""])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(IntegrityError):
        seal_manifest(manifest(a_file(path)), KEY)


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "..", "a/../../../x"])
def test_symlinks_out_of_the_dataset_are_refused(target: str) -> None:
    with pytest.raises(IntegrityError, match="outside"):
        seal_manifest(
            manifest(
                FileEntry("d/l", SYMLINK, 0o777, target=target), FileEntry("d", DIRECTORY, 0o755)
            ),
            KEY,
        )


def test_file_under_a_symlink_is_refused() -> None:
    with pytest.raises(IntegrityError, match="non-directory"):
        seal_manifest(manifest(FileEntry("l", SYMLINK, 0o777, target="d"), a_file("l/x")), KEY)


def test_setuid_mode_is_refused() -> None:
    block = seal_block(b"hello", bytes(32)).ref.located(PACK, 0)
    with pytest.raises(IntegrityError, match="mode"):
        seal_manifest(manifest(FileEntry("x", FILE, 0o4755, 5, (block,))), KEY)


def test_symlink_through_another_symlink_is_refused() -> None:
    with pytest.raises(IntegrityError, match="through another symlink"):
        seal_manifest(
            manifest(
                FileEntry("up", SYMLINK, 0o777, target="d"),
                FileEntry("d", DIRECTORY, 0o755),
                FileEntry("l", SYMLINK, 0o777, target="up/../x"),
            ),
            KEY,
        )


def test_a_manifest_of_many_pieces_round_trips() -> None:
    """Larger than one sealed piece (64 KiB): opened piece by piece."""
    m = manifest(*(a_file(f"dir/file-{i:05}.bin") for i in range(2000)))
    manifest_id, stored = seal_manifest(m, KEY)
    assert len(stored) > 4 * 64 * 1024
    assert open_manifest(manifest_id, stored, "team/geo", KEY) == m


def test_a_manifest_sealed_in_one_piece_still_opens() -> None:
    """Stores written before manifests were sealed as streams stay readable."""
    m = manifest(a_file("old.db"))
    nonce = crypto.random_nonce()
    stored = MAGIC_ONE_SHOT + nonce + crypto.seal(encode(m), KEY, nonce, _aad("team/geo"))
    assert open_manifest(ManifestId.of(stored), stored, "team/geo", KEY) == m
    with pytest.raises(IntegrityError, match="wrong key"):
        open_manifest(ManifestId.of(stored), stored, "team/geo", bytes(32))


def test_a_manifest_opens_from_a_file_a_piece_at_a_time(tmp_path: Path) -> None:
    m = manifest(*(a_file(f"f{i:05}") for i in range(2000)))
    manifest_id, stored = seal_manifest(m, KEY)
    path = tmp_path / "m"
    path.write_bytes(stored)
    with path.open("rb") as f:
        assert open_manifest(manifest_id, f, "team/geo", KEY) == m
    for where in (10, len(stored) // 2, len(stored) - 1):  # first piece, a middle one, the last
        altered = bytearray(stored)
        altered[where] ^= 1
        path.write_bytes(altered)
        with path.open("rb") as f, pytest.raises(IntegrityError, match="altered"):
            open_manifest(manifest_id, f, "team/geo", KEY)
    path.write_bytes(stored + b"more")
    with path.open("rb") as f, pytest.raises(IntegrityError, match="altered"):
        open_manifest(manifest_id, f, "team/geo", KEY)
    path.write_bytes(stored)
    with path.open("rb") as f, pytest.raises(IntegrityError, match="wrong key"):
        open_manifest(manifest_id, f, "team/geo", bytes(32))
