"""Walk a directory into the entries a manifest records, refusing what cannot be published."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aetherfs.core.manifest import DIRECTORY, FILE, SYMLINK
from aetherfs.core.paths import check_link_target, check_relative_path
from aetherfs.errors import IntegrityError, InvalidInput


@dataclass(frozen=True, slots=True)
class LocalEntry:
    path: str  # relative, '/'-separated
    kind: str
    mode: int
    size: int = 0
    target: str = ""


# Written by `aetherfs pull` into the directories it fills; never part of a dataset.
PULL_MARKER = ".aetherfs-pulled.json"


def scan_directory(root: Path) -> list[LocalEntry]:
    """Every file, directory and symlink under `root`, sorted by path.

    Raises InvalidInput, before anything is uploaded, for what cannot be published whole:
    special files (devices, FIFOs, sockets), symlinks that leave the directory, names that
    are not UTF-8, and directories or files this process may not read (a directory walked
    past would publish as empty).
    """
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory")
    entries: list[LocalEntry] = []
    problems: list[str] = []

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        problems.append(f"{_shown(root, where)}: cannot read the directory ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel == PULL_MARKER:
                continue
            if not _is_utf8(rel):
                problems.append(f"{_escaped(rel)}: the name is not UTF-8; rename it")
                continue
            try:
                st = full.lstat()
            except OSError as exc:
                problems.append(f"{rel}: cannot read it ({exc.strerror})")
                continue
            mode = stat.S_IMODE(st.st_mode) & 0o777
            try:
                check_relative_path(rel)
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(full)
                    check_link_target(rel, target)
                    entries.append(LocalEntry(rel, SYMLINK, 0o777, target=target))
                elif stat.S_ISDIR(st.st_mode):
                    entries.append(LocalEntry(rel, DIRECTORY, mode))
                elif stat.S_ISREG(st.st_mode):
                    if not os.access(full, os.R_OK):
                        problems.append(f"{rel}: cannot read the file (permission denied)")
                    entries.append(LocalEntry(rel, FILE, mode, size=st.st_size))
                else:
                    problems.append(f"{rel}: a special file ({_kind_name(st.st_mode)})")
            except IntegrityError as exc:
                problems.append(f"{rel}: {exc}")
        # Symlinked directories are recorded as links, never followed; a directory whose name
        # was refused is not entered (each name below it would be refused again).
        dirnames[:] = [d for d in dirnames if _is_utf8(d) and not (Path(dirpath) / d).is_symlink()]
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InvalidInput(f"cannot publish {root}; nothing was uploaded:\n  {listed}{more}")
    return sorted(entries, key=lambda e: e.path)


def _is_utf8(name: str) -> bool:
    # os.walk decodes undecodable bytes to lone surrogates (surrogateescape).
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(name: str) -> str:
    """A name as its bytes, undecodable ones escaped (`caf\\xe9.txt`): printable, exact."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _shown(root: Path, path: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = str(path)
    return _escaped(rel) if rel != "." else str(root)


def _kind_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "unknown type"
