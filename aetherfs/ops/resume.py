"""Resume an interrupted pull from the staging tree it left, not from a block cache.

A pull writes each block at its final offset in the staging tree, so what a killed pull wrote
is already where the next pull wants it. The next pull keeps the files there that it will
write itself (regular files with one link, at a path of the new version), removes everything
else, and offers each block at its place in them as a local chunk: the fetcher re-hashes it
against the manifest on read, as every local chunk, so a block half written, never written
(a hole) or from another version is fetched instead.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection
from pathlib import Path

from aetherfs.core.blocklist import as_block_list
from aetherfs.core.manifest import DIRECTORY, FILE, Manifest
from aetherfs.fetch.local import LocalChunk


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) spans of `fd` that hold data, holes left out (SEEK_DATA/SEEK_HOLE)."""
    extents: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, min(end, size)))
            offset = end
    except OSError:
        pass  # ENXIO: no data past offset (or no hole support: then one extent was found)
    return extents


def _prune(staging: Path, files: Collection[str], directories: Collection[str]) -> list[str]:
    """Remove from `staging` all but real directories and single-link regular files of the
    new version (symlinks are never followed); return the files kept."""
    kept: list[str] = []
    for dirpath, dirnames, filenames in os.walk(staging):
        here = Path(dirpath)
        rel_dir = here.relative_to(staging).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in list(dirnames):
            path = here / name
            if path.is_symlink() or prefix + name not in directories:
                dirnames.remove(name)
                if path.is_symlink():
                    path.unlink()
                else:
                    shutil.rmtree(path)
            else:
                os.chmod(path, 0o700, follow_symlinks=False)  # a read-only one is filled again
        for name in filenames:
            path = here / name
            st = path.lstat()
            if prefix + name in files and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                # Never a link shared with DIR's tree (a linked file is never written to).
                os.chmod(path, 0o600, follow_symlinks=False)
                kept.append(prefix + name)
            else:
                path.unlink()
    return kept


def resume_chunks(
    staging: Path, manifest: Manifest, skip: Collection[str]
) -> dict[bytes, LocalChunk]:
    """Keep what an interrupted pull left in `staging` that this pull can use, and where.

    `skip`: paths this pull will hard-link, not write. Returns, by plaintext digest, the place
    of each block of a kept file that lies in written bytes; nothing is hashed here.
    """
    if staging.is_symlink() or not staging.is_dir():
        if staging.is_symlink() or staging.exists():
            staging.unlink()
        return {}
    entries = {e.path: e for e in manifest.files if e.kind == FILE and e.path not in skip}
    directories = {e.path for e in manifest.files if e.kind == DIRECTORY}
    for rel in entries:
        parts = rel.split("/")[:-1]
        directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    chunks: dict[bytes, LocalChunk] = {}
    for rel in _prune(staging, entries, directories):
        path = staging / rel
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            extents = _data_extents(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        offset, i = 0, 0
        for digest, size in as_block_list(entries[rel].blocks).digests_and_sizes():
            while i < len(extents) and extents[i][1] <= offset:
                i += 1
            if i < len(extents) and extents[i][0] <= offset and offset + size <= extents[i][1]:
                chunks.setdefault(digest, LocalChunk(path, offset, size))
            offset += size
    return chunks
