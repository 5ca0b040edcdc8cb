"""One HubRepository, two datasets at once: each pull's pack reads go through its own dataset.

The hub serves a pack through a dataset's path only if that dataset's tagged versions use it
(`test_pack_scope.py`), so a read sent through the other dataset's path is refused. The
repository once kept the last dataset named and sent every pack read through it: a process
following two datasets through a hub (an agent with two channels) read one's blocks through
the other's path as soon as both were moving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from aetherfs.fetch.sources import StoreSource
from aetherfs.ops.pull import pull_manifest
from aetherfs.repository.hub_backed import HubRepository
from aetherfs.repository.hub_client import HubClient
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.hub.conftest import HubProcess

StartHub = Callable[..., AbstractContextManager[HubProcess]]
DATASETS = ("team/roads", "team/rivers")


def test_two_pulls_through_one_hub_repository_at_once(
    cli: Cli, start_hub_process: StartHub, tmp_path: Path
) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    sources = {}
    for seed, dataset in enumerate(DATASETS, 1):
        src = tmp_path / f"src-{seed}"
        make_tree(src, seed=seed, big=8_000_000)  # several 3 MiB batches after the first
        cli("push", str(src), f"{dataset}:1.0.0", "--tag", "stable")
        sources[dataset] = tree(src)
    token = cli("hub", "token", "create", "--name", "rita").out.strip()
    for dataset in DATASETS:  # one grant per dataset; the token may read nothing else
        cli("hub", "grant", dataset, "user:rita", "read")

    with start_hub_process() as hub:
        repo = HubRepository(HubClient(hub.url, token))
        # Both pulls have opened their manifest and fetched a first batch before either goes
        # on: from then on both channels move at once through the one repository.
        both_started = threading.Barrier(len(DATASETS), timeout=60)
        errors: dict[str, BaseException] = {}

        def pull(dataset: str) -> None:
            waited = False

            def progress(_: int) -> None:
                nonlocal waited
                if not waited:
                    waited = True
                    both_started.wait()

            try:
                signed = repo.resolve(dataset, "stable")
                manifest_id = signed.record.manifest_id
                manifest = repo.get_manifest(dataset, manifest_id)
                out = tmp_path / "out" / dataset
                pull_manifest(
                    manifest,
                    manifest_id,
                    out,
                    [StoreSource(repo, dataset)],
                    None,
                    workers=1,
                    progress=progress,
                    state_dir=tmp_path / "state",
                )
            except BaseException as exc:
                errors[dataset] = exc
                both_started.abort()  # the other one must not wait for it

        threads = [threading.Thread(target=pull, args=(d,)) for d in DATASETS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert errors == {}
    for dataset in DATASETS:
        assert tree(tmp_path / "out" / dataset) == sources[dataset]
