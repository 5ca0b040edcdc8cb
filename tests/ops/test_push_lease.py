"""gc and pushes in progress: a lease holds the packs it names; a dead one holds nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aetherfs.core.blocks import seal_block
from aetherfs.core.ids import PackId
from aetherfs.core.packs import PackBuilder
from aetherfs.errors import NotFound, StoreUnavailable
from aetherfs.ops.gc import collect_garbage
from aetherfs.ops.located import LocatedBlocks
from aetherfs.ops.push import PushStats, _Packer
from aetherfs.ops.push_lease import LEASE_TTL, SETTLE, PushLease
from aetherfs.repository import StoreRepository as Repository
from aetherfs.store import layout
from aetherfs.store.local import LocalStore
from tests.cli.test_push_pull import make_tree
from tests.conftest import Cli
from tests.ops.test_faults import repository, store_root


def orphan(repo: Repository) -> PackId:
    """A pack no tag names, as an interrupted push leaves one."""
    builder = PackBuilder()
    builder.add(seal_block(os.urandom(5_000), bytes(32)))
    pack_id, data, _ = builder.seal()
    repo.put_pack("geo", pack_id, data)
    return pack_id


@pytest.fixture
def repo(cli: Cli, tmp_path: Path) -> Repository:
    src = tmp_path / "src"
    make_tree(src)
    cli("push", str(src), "geo:1.0.0")
    return repository(cli)


def test_a_live_lease_holds_its_packs_and_a_dead_one_is_cleared(repo: Repository, cli: Cli) -> None:
    held, loose = orphan(repo), orphan(repo)
    lease = PushLease(repo.store, "geo")
    lease.name([held])
    done = collect_garbage(repo, grace_seconds=0)
    assert done.removed_packs == (loose.hex(),)
    assert done.pushes_in_progress == 1 and done.held_packs == 1
    assert repo.has_pack("geo", held)

    # The push died over an hour ago: its lease holds nothing, and goes.
    head = store_root(cli) / layout.push_key("geo", lease.id, layout.LEASE)
    old = time.time() - LEASE_TTL - 60
    os.utime(head, (old, old))
    done = collect_garbage(repo, grace_seconds=0)
    assert done.removed_packs == (held.hex(),) and done.pushes_in_progress == 0
    assert list(repo.store.list(layout.PUSHES)) == []


def test_gc_reads_the_leases_again_before_acting_on_an_old_reading(repo: Repository) -> None:
    pack = orphan(repo)
    calls: list[float] = []
    lease: list[PushLease] = []

    def clock() -> float:
        """0 when gc first reads the leases; then SETTLE has passed, and a push started."""
        calls.append(0.0 if not calls else SETTLE)
        if len(calls) == 2:
            lease.append(PushLease(repo.store, "geo"))
            lease[0].name([pack], at_risk=True)
        return calls[-1]

    done = collect_garbage(repo, grace_seconds=0, clock=clock)
    assert lease and done.removed_packs == ()
    assert repo.has_pack("geo", pack)


def test_confirm_waits_out_gc_then_finds_a_pack_gone(repo: Repository) -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    there, gone = orphan(repo), orphan(repo)
    lease = PushLease(repo.store, "geo", clock=lambda: now[0], sleep=sleep)
    lease.name([there], at_risk=True)  # reused from an earlier try's journal
    now[0] += 3
    lease.confirm(lambda pack: repo.has_pack("geo", pack))
    assert slept == [SETTLE - 3]  # a gc that read the leases before this one was named

    lease.name([gone], at_risk=True)
    repo.store.delete(layout.pack_key(gone))
    with pytest.raises(NotFound, match="push again"):
        lease.confirm(lambda pack: repo.has_pack("geo", pack))

    lease.release()
    assert list(repo.store.list(layout.PUSHES)) == []


def test_a_paused_push_names_its_packs_again_and_checks_them(repo: Repository) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pack = orphan(repo)
    lease = PushLease(repo.store, "geo", clock=lambda: now[0], sleep=sleep)
    lease.name([pack])  # uploaded by this push: not at risk while the lease is renewed
    now[0] += LEASE_TTL  # SIGSTOP for an hour; a gc took the lease for dead and cleared it
    for key in list(repo.store.list(layout.PUSHES)):
        repo.store.delete(key)
    lease.confirm(lambda pack: repo.has_pack("geo", pack))
    names = {key.rsplit("/", 1)[-1] for key in repo.store.list(layout.PUSHES)}
    assert names == {layout.LEASE, pack.hex()}
    repo.store.delete(layout.pack_key(pack))
    now[0] += LEASE_TTL
    with pytest.raises(NotFound):
        lease.confirm(lambda pack: repo.has_pack("geo", pack))


class _LeaseOutage(LocalStore):
    """The local store, gone from the moment a push names a pack in its lease."""

    def put(self, key: str, data: bytes) -> None:
        if key.startswith(layout.PUSHES) and not key.endswith(layout.LEASE):
            raise StoreUnavailable("cannot reach the store (cut off in a test)")
        super().put(key, data)


def test_a_lease_write_that_fails_gives_the_pack_buffer_back_whole(
    repo: Repository, cli: Cli
) -> None:
    cut_off = Repository(_LeaseOutage(store_root(cli)), repo.keyring)
    with LocatedBlocks() as located:
        packer = _Packer(
            cut_off, "geo", located, PushStats(), 1000, PushLease(cut_off.store, "geo"), None
        )
        builder = PackBuilder()
        builder.add(seal_block(os.urandom(2000), bytes(32)))
        with pytest.raises(StoreUnavailable) as failed:
            packer._upload(builder)  # as the uploader thread runs it
        # While the failure is still held (by the push, until it reports it), sealing
        # builds the next pack in that buffer, growing it: no view of it may be left.
        builder.buffer.extend(bytes(4000))
        assert failed.value is not None
        packer.abandon()
