"""Files only this user may read (the agent's identity key, its certificate and API token).

Written 0600 from the first byte: a fresh temporary file made with O_EXCL (so a file an
attacker left at that name, or one with wider bits, is never reused) and renamed into place.
Read back only if it is a regular file (not a symlink) that nobody else can read.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from aetherfs.errors import KeyringError
from aetherfs.ops.atomic import fsync_dir

PRIVATE_MODE = 0o600


class PrivateFileError(KeyringError):
    """A secret file of the agent is unsafe or unreadable (the message says what to do)."""


def write_private(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write `data` to `path`, mode 0600, atomically. With `replace=False` an existing file is
    kept (returns False): two agents starting at once both end up with the same one."""
    path.parent.mkdir(parents=True, exist_ok=True)  # the state dir keeps its usual mode
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # a umask cannot have widened it, but one may have cut it
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
            created = True
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: never clobbers
                created = True
            except FileExistsError:
                created = False
    finally:
        if not replace or not created:
            tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return created


def read_private(path: Path, what: str, if_deleted: str) -> bytes:
    """The bytes of a private file; PrivateFileError if others could read it or it is not a
    plain file. FileNotFoundError passes through (the caller decides whether to create it);
    `if_deleted` tells the user what deleting it costs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except PermissionError:
        raise PrivateFileError(f"cannot read {what} {path}: permission denied") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise PrivateFileError(
            f"cannot read {what} {path}: {exc.strerror} (it must be a plain file, not a link)"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileError(f"{what} {path} is not a plain file: remove it")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise PrivateFileError(
                f"{what} {path} has mode {mode:04o}: other users may read it. If nobody else "
                f"could have, `chmod 600 {path}`; otherwise delete it ({if_deleted})"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
