"""A store in a local directory: the embedded default, no setup.

Every write goes to a temporary file that is fsynced and then renamed (or hard-linked, for
put-if-absent) into place, and the directory is fsynced, so a crash leaves the old object or
the new one. Compare-and-swap holds an flock on a per-key lock file, which serialises writers
across processes on one host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import blake3

from aetherfs.errors import AetherError, Conflict, InvalidInput, NotFound, StoreUnavailable, echo
from aetherfs.store.base import Versioned

_LOCKS = ".locks"
_TMP = ".tmp"


def _version_of(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()[:32]


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.resolve().as_uri()
        # Made on the first write, never on open: a command that only reads a mistyped path
        # must not leave a new, empty store there.
        self._prepared = False

    def _prepare(self) -> None:
        if self._prepared:
            return
        try:
            (self.root / _TMP).mkdir(parents=True, exist_ok=True)
            (self.root / _LOCKS).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot use {self.root} as a store: {exc.strerror}") from None
        self._prepared = True

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/") or key.startswith("."):
            raise InvalidInput(f"bad store key {echo(key)}")
        return self.root / key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{key} is not in the store {self.url}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{key} is not in the store {self.url}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"{key} is not in the store {self.url}") from None

    def mtime(self, key: str) -> float:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            raise NotFound(f"{key} is not in the store {self.url}") from None

    def _write_temp(self, data: bytes | memoryview | BinaryIO) -> Path:
        self._prepare()
        fd, name = tempfile.mkstemp(dir=self.root / _TMP)
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, bytes | memoryview):
                    f.write(data)
                else:
                    shutil.copyfileobj(data, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise _os_error(exc, self.url) from None
        return Path(name)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._write_temp(data)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def put_file_if_absent(self, key: str, file: BinaryIO) -> bool:
        return self.put_if_absent(key, file)

    def put_if_absent(self, key: str, data: bytes | memoryview | BinaryIO) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._write_temp(data)
        try:
            os.link(tmp, path)  # link(2) fails if the name exists: atomic create-if-absent
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        _fsync_dir(path.parent)
        return True

    def get_versioned(self, key: str) -> Versioned:
        data = self.get(key)
        return Versioned(data, _version_of(data))

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self._prepare()
        lock_path = self.root / _LOCKS / blake3.blake3(key.encode()).hexdigest()[:32]
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        with self._locked(key):
            try:
                current: str | None = self.get_versioned(key).version
            except NotFound:
                current = None
            if current != version:
                raise Conflict(f"{key} changed while it was being updated; retry")
            self.put(key, data)
        return _version_of(data)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def list(self, prefix: str) -> Iterator[str]:
        directory, _, _ = prefix.rpartition("/")
        base = self.root / directory if directory else self.root
        if not base.is_dir():
            return
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            if rel.split(os.sep)[0] in (_LOCKS, _TMP):
                dirnames[:] = []
                continue
            for name in filenames:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: OSError, url: str) -> AetherError:
    if exc.errno == errno.ENOSPC:
        return StoreUnavailable(f"the store {url} is out of space: free some and retry")
    return StoreUnavailable(f"cannot write to the store {url}: {exc.strerror}")
