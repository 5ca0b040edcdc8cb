"""The agent's data root on disk, and the only code that changes it.

DATA_ROOT/
  team/geo-db/stable -> ../../.versions/<manifest-id>   (symlink, switched by rename)
  .versions/<manifest-id>/...                          (one materialised version, read-only use)
  .versions/.staging-<manifest-id>                     (being built; removed at start)
  .agent/lock                                          (flock: one writing agent)
  .agent/versions/<manifest-id>.json                   (dataset, blocks to pin, when built,
                                                        each file's stat as written)
  .agent/cache/                                        (block cache, by default)
  .agent/agent.sock, .agent/grpc.sock                  (status API)
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherfs.core.ids import DIGEST_SIZE, BlockId, ManifestId
from aetherfs.errors import AetherError, Conflict, LocalIOError
from aetherfs.ops.atomic import fsync_dir
from aetherfs.ops.reuse import Stamp

VERSIONS = ".versions"
STAGING_PREFIX = ".staging-"


class DataRootBusy(Conflict):
    """Another agent holds the data root's write lock."""


class DataRootLost(LocalIOError):
    """The data root was removed or replaced under a running agent: a local fault."""

    @classmethod
    def because(cls, root: Path, why: str) -> DataRootLost:
        return cls(
            f"the data root {root} was removed or replaced while the agent ran ({why}): a "
            "local fault, not the store; the agent recreates it and rebuilds the subscribed "
            "versions (find what removed it: a cleanup job, a tmpfs remounted)"
        )


@dataclass(frozen=True, slots=True)
class Written:
    """A materialised file's stat as the agent left it: what changes when anyone writes it.

    nlink is left out: hard-linking a file into a new version changes it on purpose."""

    stamp: Stamp
    mode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Written:
        return cls(Stamp.of(st), stat.S_IMODE(st.st_mode))

    def matches(self, path: Path) -> bool:
        try:
            st = path.lstat()
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and Written.of(st) == self

    def to_json(self) -> list[int]:
        return [self.stamp.size, self.stamp.mtime_ns, self.stamp.ino, self.mode]

    @classmethod
    def from_json(cls, value: Any) -> Written:
        size, mtime_ns, ino, mode = (int(n) for n in value)
        return cls(Stamp(size, mtime_ns, ino), mode)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    manifest_id: ManifestId
    dataset: str
    built: float
    blocks: bytes  # the ids of its blocks, 32 bytes each, end to end (compact: 16,000/GiB)
    files: int
    size: int
    fingerprints: dict[str, str]  # file fingerprint -> a path with those bytes (hard links)
    # Each regular file's stat as written (path -> Written); empty in records written before
    # versions were checked, whose every file is then re-hashed once.
    written: dict[str, Written] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "manifest": self.manifest_id.hex(),
                "dataset": self.dataset,
                "built": self.built,
                "blocks": base64.b64encode(self.blocks).decode(),
                "files": self.files,
                "size": self.size,
                "fingerprints": self.fingerprints,
                "written": {path: w.to_json() for path, w in self.written.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str, with_blocks: bool = True) -> VersionInfo:
        """`with_blocks=False` leaves `blocks` empty: most callers do not need 16,000 ids/GiB."""
        doc = json.loads(text)
        return cls(
            ManifestId.from_hex(doc["manifest"]),
            str(doc["dataset"]),
            float(doc["built"]),
            _blocks_from_json(doc["blocks"]) if with_blocks else b"",
            int(doc["files"]),
            int(doc["size"]),
            {str(k): str(v) for k, v in doc.get("fingerprints", {}).items()},
            {str(k): Written.from_json(v) for k, v in doc.get("written", {}).items()},
        )

    def changed(self, base: Path) -> list[str]:
        """Files under `base` (the version's directory) whose stat is not what was written."""
        return [rel for rel, w in self.written.items() if not w.matches(base / rel)]

    def block_ids(self) -> Iterator[BlockId]:
        for start in range(0, len(self.blocks), DIGEST_SIZE):
            yield BlockId(self.blocks[start : start + DIGEST_SIZE])


def _blocks_from_json(value: object) -> bytes:
    if isinstance(value, list):  # records written before block ids were stored as base64
        return b"".join(bytes.fromhex(str(h)) for h in value)
    raw = base64.b64decode(str(value), validate=True)
    if len(raw) % DIGEST_SIZE:
        raise ValueError("block ids must be whole")
    return raw


class DataRoot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = root / VERSIONS
        self.state = root / ".agent"
        self.meta = self.state / "versions"
        self._lock_fd: int | None = None

    # Lock -------------------------------------------------------------------------------
    def lock(self, wait: bool) -> None:
        """Take the write lock (flock, also honoured over NFSv4 and bind mounts)."""
        self.state.mkdir(parents=True, exist_ok=True)
        path = self.state / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataRootBusy(
                f"the data root {self.root} is in use by another agent ({holder}); one agent "
                "writes a data root at a time. Stop it, use another --data-root, or pass "
                "--wait-for-lock to take over when it stops"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def lost(self) -> str | None:
        """Why the layout this agent locked is no longer there (the root removed or replaced
        while it ran), or None. Only a writing agent (one holding the lock) can tell."""
        if self._lock_fd is None:
            return None
        held = os.fstat(self._lock_fd)
        try:
            now = os.stat(self.state / "lock")
        except OSError:
            return f"its lock file {self.state / 'lock'} is gone"
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return f"its lock file {self.state / 'lock'} was replaced"
        for path in (self.versions, self.meta):
            if not path.is_dir():
                return f"{path} is gone"
        return None

    def recreate(self) -> list[Path]:
        """After `lost`: take the lock again on a new lock file and recreate the layout."""
        self.unlock()
        self.lock(wait=False)
        return self.prepare()

    # Layout -----------------------------------------------------------------------------
    def prepare(self) -> list[Path]:
        """Create the layout; remove half-built versions left by a crash. Returns those."""
        self.versions.mkdir(parents=True, exist_ok=True)
        self.meta.mkdir(parents=True, exist_ok=True)
        removed = []
        for entry in self.versions.iterdir():
            if entry.name.startswith(STAGING_PREFIX):
                remove_tree(entry)
                removed.append(entry)
        for entry in self.meta.iterdir():
            if entry.name.startswith(".tmp-"):
                entry.unlink()
        return removed

    def version_dir(self, manifest_id: ManifestId) -> Path:
        return self.versions / manifest_id.hex()

    def staging_dir(self, manifest_id: ManifestId) -> Path:
        return self.versions / f"{STAGING_PREFIX}{manifest_id.hex()}"

    def channel_link(self, dataset: str, channel: str) -> Path:
        return self.root / dataset / channel

    def has_version(self, manifest_id: ManifestId) -> bool:
        return (
            self.version_dir(manifest_id).is_dir()
            and (self.meta / f"{manifest_id.hex()}.json").is_file()
        )

    def live(self, dataset: str, channel: str) -> ManifestId | None:
        """The manifest the channel's link points at, if any."""
        link = self.channel_link(dataset, channel)
        try:
            target = os.readlink(link)
        except (FileNotFoundError, OSError):
            return None
        try:
            return ManifestId.from_hex(Path(target).name)
        except (ValueError, AetherError):
            return None

    # Versions ---------------------------------------------------------------------------
    def publish_version(self, staging: Path, info: VersionInfo) -> Path:
        """Move a fully built, fsynced tree into place; its record is written first."""
        final = self.version_dir(info.manifest_id)
        tmp = self.meta / f".tmp-{info.manifest_id.hex()}"
        tmp.write_text(info.to_json())
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        if final.exists():
            remove_tree(final)  # a directory without a record: a crash between the two renames
        os.rename(staging, final)
        os.rename(tmp, self.meta / f"{info.manifest_id.hex()}.json")
        fsync_dir(self.versions)
        fsync_dir(self.meta)
        return final

    def save_record(self, info: VersionInfo) -> None:
        """Replace a published version's record (after a repair changed what was written)."""
        tmp = self.meta / f".tmp-{info.manifest_id.hex()}"
        tmp.write_text(info.to_json())
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, self.meta / f"{info.manifest_id.hex()}.json")
        fsync_dir(self.meta)

    def version_info(self, manifest_id: ManifestId) -> VersionInfo | None:
        try:
            return VersionInfo.from_json((self.meta / f"{manifest_id.hex()}.json").read_text())
        except (OSError, ValueError, KeyError):
            return None

    def all_versions(self, with_blocks: bool = False) -> list[VersionInfo]:
        found = []
        for path in self.meta.glob("*.json"):
            try:
                found.append(VersionInfo.from_json(path.read_text(), with_blocks))
            except (OSError, ValueError, KeyError):
                continue
        return found

    def switch(self, dataset: str, channel: str, manifest_id: ManifestId) -> Path:
        """Point DATA_ROOT/dataset/channel at the version: new symlink renamed over the old."""
        link = self.channel_link(dataset, channel)
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(self.version_dir(manifest_id), link.parent)
        tmp = link.parent / f".{channel}.tmp-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.rename(tmp, link)
        fsync_dir(link.parent)
        return link

    def live_links(self) -> dict[tuple[str, str], ManifestId]:
        """Every channel link under the root and the manifest it names."""
        links: dict[tuple[str, str], ManifestId] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            if rel.parts[:1] in ((VERSIONS,), (".agent",)):
                dirnames[:] = []
                continue
            for name in [*filenames, *dirnames]:
                path = Path(dirpath) / name
                if name.startswith(".") or not path.is_symlink():
                    continue
                manifest = self.live(rel.as_posix(), name)
                if manifest is not None:
                    links[(rel.as_posix(), name)] = manifest
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        return links

    def collect(self, keep: int) -> list[ManifestId]:
        """Remove versions no channel points at, keeping the `keep` newest per dataset."""
        live = set(self.live_links().values())
        by_dataset: dict[str, list[VersionInfo]] = {}
        for info in self.all_versions():
            if info.manifest_id not in live:
                by_dataset.setdefault(info.dataset, []).append(info)
        removed = []
        for infos in by_dataset.values():
            infos.sort(key=lambda i: i.built, reverse=True)
            for info in infos[keep:]:
                self.remove_version(info.manifest_id)
                removed.append(info.manifest_id)
        return removed

    def remove_version(self, manifest_id: ManifestId) -> None:
        # The record goes first: a version without one is not trusted (and is rebuilt).
        with contextlib.suppress(FileNotFoundError):
            (self.meta / f"{manifest_id.hex()}.json").unlink()
        path = self.version_dir(manifest_id)
        if path.exists():
            remove_tree(path)

    def pinned_blocks(self, served: Collection[ManifestId] = ()) -> set[BlockId]:
        """Blocks of every kept version its tree cannot serve (not in `served`: not indexed
        by `TreeBlocks`), which the cache must not evict. A version whose tree serves its
        blocks pins none: its tree is the copy kept (docs/agent.md, "Disk")."""
        pinned: set[BlockId] = set()
        for path in self.meta.glob("*.json"):
            try:
                if ManifestId.from_hex(path.stem) in served:
                    continue
                info = VersionInfo.from_json(path.read_text())
            except (OSError, ValueError, KeyError, AetherError):
                continue
            pinned.update(info.block_ids())
        return pinned


def remove_tree(path: Path) -> None:
    """Remove a tree even where a version made directories read-only."""

    def fix(func: object, p: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, onerror=fix)
            else:
                os.unlink(p)

    # Python 3.11: `onerror` (3.12 renamed it `onexc`).
    shutil.rmtree(path, onerror=fix)


def now() -> float:
    return time.time()
