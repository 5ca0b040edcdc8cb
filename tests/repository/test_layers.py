"""The repository layer (store-backed and hub-backed repositories, the hub client, the keyring
file and the record spool) imports only core, errors, store, config, http and itself, so the
agent, the hub and the CLI all stand on it and it on none of them; each of its modules
imports alone, with nothing above it loaded on the way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import aetherfs

ROOT = Path(aetherfs.__file__).parent
LAYER = sorted(
    [f"aetherfs.repository.{p.stem}" for p in (ROOT / "repository").glob("*.py")]
    + ["aetherfs.keys"]
)
LAYER = [m.removesuffix(".__init__") for m in LAYER]
BELOW = ("aetherfs.core", "aetherfs.errors", "aetherfs.store", "aetherfs.config", "aetherfs.http")
ALLOWED = (*BELOW, "aetherfs.repository", "aetherfs.keys")


def _inside(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _source(module: str) -> Path:
    path = ROOT.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported(module: str) -> list[str]:
    """Every aetherfs module `module` names in an import, at any depth of its code."""
    found = []
    for node in ast.walk(ast.parse(_source(module).read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "aetherfs":
                found += [f"aetherfs.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return [name for name in found if _inside(name, ("aetherfs",))]


@pytest.mark.parametrize("module", LAYER)
def test_imports_stay_in_the_layer(module: str) -> None:
    outside = [name for name in _imported(module) if not _inside(name, ALLOWED)]
    assert outside == [], f"{module} imports {outside}"


@pytest.mark.parametrize("module", LAYER)
def test_each_module_imports_alone_and_loads_nothing_above(module: str) -> None:
    script = (
        f"import json, sys, {module}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('aetherfs.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    above = [m for m in loaded if not _inside(m, ALLOWED)]
    assert above == [], f"importing {module} loads {above}"
