"""Schemathesis against the OpenAPI document a real `aetherfs hub` process serves: no input it
generates may cause a server error, and responses must match the document."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import Cli
from tests.hub.conftest import hub_process
from tests.hub.helpers import make_tree

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def hub_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenApiSchema]:
    root = tmp_path_factory.mktemp("schemathesis")
    home = root / "home"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "AETHERFS_STORE": (root / "store").as_uri(),
    }
    cli = Cli(env, home)
    make_tree(root / "src", size=20_000)
    cli("push", str(root / "src"), "team/geo-db:1.0.0", "--tag", "stable")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aetherfs.cli.main",
            "hub",
            "token",
            "create",
            "--name",
            "root",
            "--admin",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    TOKEN["admin"] = done.stdout.strip()
    with hub_process(cli) as hub:
        yield schemathesis.openapi.from_url(f"{hub.url}/v1/openapi.json")


def exercise(operation: Any, auth: dict[str, str]) -> None:
    # Content-addressed uploads: no schema can say "these bytes hash to the id in the path",
    # and a grant to `anyone` is read-only: a 4xx there is the server being right.
    business = operation.path.endswith(("/manifests/{manifest}", "/packs/{pack}", "/grants"))
    excluded = [positive_data_acceptance] if business else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=auth, timeout=30, excluded_checks=excluded)

    run()


def test_no_server_errors(hub_schema: OpenApiSchema) -> None:
    auth = {"Authorization": f"Bearer {TOKEN['admin']}"}
    operations = []
    for result in hub_schema.get_all_operations():
        assert isinstance(result, Ok), result  # every operation in the document is valid
        operations.append(result.ok())
    assert len(operations) > 20
    for operation in operations:
        # Streams never end by themselves: the watch endpoint is tested in test_watch.py.
        if not operation.path.endswith("/watch"):
            exercise(operation, auth)
