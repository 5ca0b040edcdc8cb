"""aetherfs/protocol imports only aetherfs.core, aetherfs.errors and itself (so the simulator
and a keyless relay can use it), and each of its modules imports alone (no cycles)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import aetherfs.protocol

PACKAGE = Path(aetherfs.protocol.__file__).parent
ALLOWED = ("aetherfs.core", "aetherfs.errors", "aetherfs.protocol")
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_imports_stay_in_their_layer(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("aetherfs"):
                assert name.startswith(ALLOWED), f"{module} imports {name}"
    importlib.import_module(f"aetherfs.protocol.{module}")


def test_each_module_imports_alone() -> None:
    for module in MODULES:
        subprocess.run([sys.executable, "-c", f"import aetherfs.protocol.{module}"], check=True)
