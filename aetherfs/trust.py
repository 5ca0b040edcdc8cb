"""The trusted tag state on disk: one file per store, updated under a lock, replaced atomically.

    DIR/<store-id>.json   the state (core/trust.py's format)
    DIR/<store-id>.lock   flock: CLI processes and an agent's threads update it one at a time

The CLI's DIR is XDG_STATE_HOME/aetherfs/trust; an agent's is DATA_ROOT/.agent/trust, since it
may run as a user with no home. Every reader of tags (the CLI, the agent, later peers) checks
a record here before it acts on it (`accept`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

import blake3

from aetherfs.core.tags import TagRecord
from aetherfs.core.trust import TrustedTag, TrustState, check_record
from aetherfs.errors import IntegrityError, LocalIOError
from aetherfs.ops.atomic import fsync_dir

TRUST_DIR = "trust"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class TrustStore:
    def __init__(self, directory: Path, reset_command: str = "aetherfs trust reset") -> None:
        self.directory = directory
        self.reset_command = reset_command  # how this copy's owner accepts a store reset

    @classmethod
    def for_agent(cls, state_dir: Path, data_root: Path, store_url: str) -> TrustStore:
        """The copy an agent keeps in its own state directory."""
        return cls(
            state_dir / TRUST_DIR,
            f"aetherfs trust reset --data-root {data_root} --store {store_url}",
        )

    def path(self, store_id: str) -> Path:
        name = (
            store_id
            if _SAFE_ID.fullmatch(store_id)
            else blake3.blake3(store_id.encode()).hexdigest()
        )
        return self.directory / f"{name}.json"

    def load(self, store_id: str) -> TrustState:
        """What is trusted for `store_id` (nothing yet: an empty state)."""
        path = self.path(store_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return TrustState(store_id)
        except OSError as exc:
            raise LocalIOError(
                f"cannot read the trusted tag state {path}: {exc.strerror}"
            ) from None
        return TrustState.from_bytes(raw, str(path), self.reset_command)

    def accept(self, store_id: str, record: TagRecord) -> TrustedTag:
        """Check `record` against what is trusted and remember it if it is newer.

        Raises TagRollback (an IntegrityError) for an older record or a forked one.
        """
        with self._locked(store_id):
            state = self.load(store_id)
            remedy = (
                "If the store was really reset, accept what it holds now with "
                f"`{self.reset_command} --dataset {record.dataset}`"
            )
            if check_record(state.get(record.dataset, record.tag), record, remedy):
                self._write(state.with_record(record))
        return TrustedTag.of(record)

    def remember(self, store_id: str, record: TagRecord) -> None:
        """A record this process has just written: remembered if it is newer than what is
        trusted. One already older (another writer moved the tag after us, and a reader here
        trusted that) is no rollback: our write was the head when it landed, so nothing is
        refused; a different record under the same seq still is (a fork)."""
        with self._locked(store_id):
            state = self.load(store_id)
            trusted = state.get(record.dataset, record.tag)
            if trusted is not None and record.seq < trusted.seq:
                return
            remedy = f"`{self.reset_command} --dataset {record.dataset}` if the store was reset"
            if check_record(trusted, record, remedy):
                self._write(state.with_record(record))

    def forget(self, store_id: str, dataset: str | None = None) -> list[str]:
        """Drop what is trusted (all of a store, or one dataset's tags); returns what was dropped.

        The next read trusts the store as it is then. Without `dataset`, a damaged state is
        removed too.
        """
        with self._locked(store_id):
            path = self.path(store_id)
            if not path.exists():
                return []
            try:
                state = self.load(store_id)
            except IntegrityError:
                if dataset is not None:
                    raise
                path.unlink()
                fsync_dir(self.directory)
                return [f"everything in the damaged {path}"]
            kept = state.without(dataset)
            dropped = sorted(set(state.tags) - set(kept.tags))
            if dropped:
                self._write(kept)
            return dropped

    def stores(self) -> list[TrustState]:
        """Every store this copy trusts tags of."""
        states = []
        for path in sorted(self.directory.glob("*.json")):
            with contextlib.suppress(OSError):
                states.append(
                    TrustState.from_bytes(path.read_bytes(), str(path), self.reset_command)
                )
        return states

    @contextlib.contextmanager
    def _locked(self, store_id: str) -> Iterator[None]:
        lock_path = self.path(store_id).with_suffix(".lock")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LocalIOError(
                f"cannot write the trusted tag state in {self.directory}: {exc.strerror}; "
                "a reader that cannot remember what it trusted cannot refuse a rollback"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, state: TrustState) -> None:
        """Temp file, fsync, rename, fsync of the directory: a crash leaves old or new."""
        path = self.path(state.store_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as out:
                out.write(state.to_bytes())
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
            fsync_dir(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise LocalIOError(
                f"cannot write the trusted tag state {path}: {exc.strerror}"
            ) from None
