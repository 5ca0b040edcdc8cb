"""One pull at a time into a directory: an flock on a file beside it, next to its staging tree.

The lock lives in DIR's parent (`.DIR.aetherfs-lock`), not in a per-user directory, so two
users, or a user and `sudo`, pulling into one DIR exclude each other. It is released when the
process ends, however it ends (the kernel drops an flock with its last descriptor). The file
names its holder (pid, what it pulls) so a second pull can say whom it is waiting for; the
holder removes it when done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aetherfs.errors import Conflict, LocalIOError

_HOLDER_READ_ATTEMPTS = 20  # of 10 ms: the holder writes its name just after taking the lock


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.aetherfs-lock"


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:
        # Left by another user: an flock needs only a descriptor, not write access.
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise LocalIOError(f"cannot open the pull lock {path}: {exc.strerror}") from None
    except OSError as exc:
        raise LocalIOError(f"cannot create the pull lock {path}: {exc.strerror}") from None


def _holder(fd: int) -> str:
    """Who holds the lock, as written in the file ("pid 123, pulling geo:1.0.0")."""
    for _ in range(_HOLDER_READ_ATTEMPTS):
        try:
            doc = json.loads(os.pread(fd, 4096, 0))
            pid, what = int(doc["pid"]), str(doc.get("what", ""))[:200]
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.01)
            continue
        return f"pid {pid}, pulling {what}" if what else f"pid {pid}"
    return "a process that did not say which"


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file `fd` locked (the last holder may have removed it)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def hold_target(
    target: Path, what: str, wait: bool = False, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold `target` for one pull. Raises Conflict at once if another pull holds it, unless
    `wait`: then `on_wait` is told whom it waits for, and the call blocks until it is free."""
    path = lock_path(target)
    while True:
        fd = _open(path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise Conflict(
                        f"another pull is writing into {target} ({holder}); let it finish, "
                        "or pass --wait to wait for it"
                    ) from None
                if on_wait is not None:
                    on_wait(f"waiting for another pull into {target} to finish ({holder})")
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _same_file(fd, path):
                os.close(fd)  # the last holder removed it after we opened it: lock the new one
                continue
        except BaseException:
            os.close(fd)
            raise
        break
    try:
        with contextlib.suppress(OSError):  # opened read-only: the holder stays unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what}).encode(), 0)
        yield
    finally:
        # Removed while still held, so no one can lock this file and find it gone later.
        try:
            path.unlink()
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                raise
        os.close(fd)
