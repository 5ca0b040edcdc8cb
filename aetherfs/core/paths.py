"""Checks on the relative paths a manifest names: nothing may land outside the dataset."""

from __future__ import annotations

import posixpath

from aetherfs.errors import IntegrityError

MAX_PATH = 4096


def check_relative_path(path: str) -> str:
    """Return `path` if it is relative, normalised and stays inside the dataset."""
    if not path or len(path) > MAX_PATH or "\0" in path or "\\" in path:
        raise IntegrityError(f"unsafe path in manifest: {path!r}")
    if path.startswith("/"):
        raise IntegrityError(f"absolute path in manifest: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise IntegrityError(f"path in manifest is not normalised or climbs out: {path!r}")
    return path


def check_link_target(path: str, target: str) -> str:
    """Return `target` if the symlink at `path` points inside the dataset."""
    if not target or "\0" in target or target.startswith("/"):
        raise IntegrityError(f"symlink {path!r} points outside the dataset: {target!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        raise IntegrityError(f"symlink {path!r} points outside the dataset: {target!r}")
    return target
