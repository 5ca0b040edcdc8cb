"""aetherfs/fetch (the block sources and the planner) imports only what lies below it: core,
errors, store, config and the repository layer, never ops, agent, hub or cli (the planner once
imported ops, which imports fetch: a cycle). Each of its modules imports alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import aetherfs.fetch

PACKAGE = Path(aetherfs.fetch.__file__).parent
BELOW = {"core", "errors", "store", "config", "repo", "repository", "fetch"}
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def aetherfs_imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] == "aetherfs"}


@pytest.mark.parametrize("module", MODULES)
def test_fetch_imports_only_the_layers_below(module: str) -> None:
    for name in aetherfs_imports((PACKAGE / f"{module}.py").read_text()):
        part = name.split(".")[1] if "." in name else ""
        assert part in BELOW, f"aetherfs.fetch.{module} imports {name}"


def test_the_rule_sees_a_forbidden_import() -> None:
    assert aetherfs_imports("from aetherfs.ops.reuse import LocalChunk\nimport json\n") == {
        "aetherfs.ops.reuse"
    }


def test_each_module_imports_alone() -> None:
    for module in MODULES:
        subprocess.run([sys.executable, "-c", f"import aetherfs.fetch.{module}"], check=True)
