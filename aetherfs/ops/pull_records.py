"""What pull remembers of the directories it filled, kept outside them: DIR holds the dataset.

One record per directory under `STATE/pulls/` (the CLI's state dir, XDG_STATE_HOME), in the
format of `reuse.MarkerWriter`: its head names the directory's resolved path, device and inode,
and the file's name is a hash of that path followed by the device and inode. A record vouches
only for the directory it names: one replaced (a new inode at the path) or moved (another
path) is not vouched for, and each file's own stat is checked besides, as before.

A directory pulled by earlier versions carries its record inside, as `.aetherfs-pulled.json`:
it is read once, and goes with the old tree when the next pull swaps in the new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from aetherfs.ops.reuse import MarkerWriter, PulledFile, read_record
from aetherfs.ops.scan import PULL_MARKER as LEGACY_MARKER

__all__ = ["LEGACY_MARKER", "PullRecords", "TargetKey"]


@dataclass(frozen=True, slots=True)
class TargetKey:
    """A directory as a record names it: where it is and which directory it is."""

    path: str  # resolved, absolute
    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> TargetKey | None:
        """The key of the directory at `path`; None if there is none (a symlink is none)."""
        try:
            st = path.lstat()
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        return cls(os.path.realpath(path), st.st_dev, st.st_ino)

    def moved_to(self, path: Path) -> TargetKey:
        """This directory's key once it is renamed to `path` (a rename keeps the inode)."""
        return TargetKey(os.path.realpath(path), self.dev, self.ino)

    def head(self) -> dict[str, Any]:
        return {"target": self.path, "dev": self.dev, "ino": self.ino}


class PullRecords:
    """The records of one user's pulls, by directory."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "pulls"

    def _prefix(self, path: str) -> str:
        return blake3.blake3(os.fsencode(path)).hexdigest()[:32]

    def _path(self, key: TargetKey) -> Path:
        return self.root / f"{self._prefix(key.path)}-{key.dev}-{key.ino}"

    def read(self, target: Path) -> dict[str, PulledFile] | None:
        """The files recorded for the directory now at `target`; None if no record vouches
        for it (then it was not made by `aetherfs pull`, as far as this user knows)."""
        key = TargetKey.of(target)
        if key is None:
            return None
        found = read_record(self._path(key))
        if found is not None:
            head, files = found
            if (head.get("target"), head.get("dev"), head.get("ino")) == (
                key.path,
                key.dev,
                key.ino,
            ):
                return files
        legacy = read_record(target / LEGACY_MARKER)
        return legacy[1] if legacy is not None else None

    def writer(self, key: TargetKey, head: dict[str, Any]) -> MarkerWriter:
        """A writer of the record of the directory `key` names (its inode not there yet: the
        record vouches for nothing until the directory is swapped in)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return MarkerWriter(self._path(key), head | key.head())

    def prune(self, path: Path, keep: TargetKey | None) -> None:
        """Remove every record of the directory at `path` but `keep`'s: the trees they named
        are gone (replaced, or staged by a pull killed before its swap)."""
        if not self.root.is_dir():
            return
        prefix = self._prefix(os.path.realpath(path)) + "-"
        mine = self._path(keep).name if keep is not None else None
        for entry in self.root.iterdir():
            if entry.name.startswith(prefix) and entry.name != mine:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
