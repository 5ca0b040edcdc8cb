"""aetherfs/fetch (the block sources and the planner) imports only what lies below it: core,
errors, store, config, http and the repository layer, never ops, agent, hub or cli (the planner
once imported ops, which imports fetch: a cycle). Each of its modules imports alone and loads
nothing above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import aetherfs.fetch

PACKAGE = Path(aetherfs.fetch.__file__).parent
# The repository layer is repo.py (becoming repository/), the keyring file and the record spool.
BELOW = {
    "core",
    "errors",
    "store",
    "config",
    "http",
    "repo",
    "repository",
    "keys",
    "spool",
    "fetch",
}
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def aetherfs_imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "aetherfs":
            names.update(f"aetherfs.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] == "aetherfs"}


@pytest.mark.parametrize("module", MODULES)
def test_fetch_imports_only_the_layers_below(module: str) -> None:
    for name in aetherfs_imports((PACKAGE / f"{module}.py").read_text()):
        part = name.split(".")[1] if "." in name else ""
        assert part in BELOW, f"aetherfs.fetch.{module} imports {name}"


def test_the_rule_sees_a_forbidden_import() -> None:
    source = "from aetherfs.ops.reuse import LocalChunk\nfrom aetherfs import agent\nimport json\n"
    assert aetherfs_imports(source) == {"aetherfs.ops.reuse", "aetherfs.agent"}


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_and_loads_nothing_above(module: str) -> None:
    script = (
        f"import sys, aetherfs.fetch.{module}\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('aetherfs.')}))"
    )
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    loaded = set(ast.literal_eval(done.stdout.decode()))
    assert loaded <= BELOW, f"aetherfs.fetch.{module} loads {sorted(loaded - BELOW)}"
