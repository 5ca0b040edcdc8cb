"""A materialised version as an `aetherfs.http.files.Tree`, so the agent serves its live
datasets with the same file server as the hub (Range, ETag, If-None-Match, listings).

ETags come from the content (mode, size and block digests, as recorded when the version was
built): a file unchanged between versions keeps its ETag across a channel switch.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import blake3

from aetherfs.http.files import DIRECTORY, FILE, SYMLINK, Node

PIECE = 256 * 1024


class VersionTree:
    def __init__(self, root: Path, manifest: str, prints: dict[str, str]) -> None:
        self.root = root
        self.manifest = manifest
        self.prints = prints  # path -> content fingerprint

    def _node(self, rel: str) -> Node | None:
        try:
            st = os.lstat(self.root / rel if rel else self.root)
        except (FileNotFoundError, NotADirectoryError):
            return None
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            return Node(rel, SYMLINK, target=os.readlink(self.root / rel))
        if stat.S_ISDIR(st.st_mode):
            return Node(rel, DIRECTORY, mode=mode)
        if not stat.S_ISREG(st.st_mode):
            return None
        etag = self.prints.get(rel)
        if etag is None:
            etag = blake3.blake3(f"{self.manifest}/{rel}".encode()).hexdigest()
        return Node(rel, FILE, st.st_size, mode, etag[:32])

    def lookup(self, path: str) -> Node | None:
        # Every parent must be a real directory: a symlinked directory is never walked through.
        parts = path.split("/") if path else []
        for i in range(1, len(parts)):
            if not os.path.isdir(self.root.joinpath(*parts[:i])) or os.path.islink(
                self.root.joinpath(*parts[:i])
            ):
                return None
        return self._node(path)

    def children(self, path: str) -> list[Node]:
        base = self.root / path if path else self.root
        nodes = []
        for name in sorted(os.listdir(base)):
            node = self._node(f"{path}/{name}" if path else name)
            if node is not None:
                nodes.append(node)
        return nodes

    def read(self, path: str, start: int, length: int) -> Iterator[bytes]:
        f = (self.root / path).open("rb")

        def pieces() -> Iterator[bytes]:
            with f:
                f.seek(start)
                left = length
                while left > 0:
                    data = f.read(min(PIECE, left))
                    if not data:
                        return
                    left -= len(data)
                    yield data

        return pieces()
