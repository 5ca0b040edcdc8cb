"""The engine and the transport sit on the sans-I/O parts, never the other way round, and
know nothing of the agent: the agent reaches them through their seams."""

import ast
import subprocess
import sys
from pathlib import Path

import aetherfs

ROOT = Path(aetherfs.__file__).parent
ALLOWED = {
    "net": ("aetherfs.core", "aetherfs.errors", "aetherfs.protocol", "aetherfs.net"),
    "swarm": (
        "aetherfs.core",
        "aetherfs.errors",
        "aetherfs.protocol",
        "aetherfs.planner",
        "aetherfs.net.transport",
        "aetherfs.swarm",
    ),
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_swarm_and_transport_import_only_the_layers_below() -> None:
    for package, allowed in ALLOWED.items():
        for module in sorted((ROOT / package).glob("*.py")):
            if package == "net" and module.name != "transport.py" and module.name != "__init__.py":
                continue  # discovery is another part's
            for name in imported(module):
                if name.startswith("aetherfs"):
                    assert name.startswith(allowed), (module.name, name)


def test_the_sans_io_parts_do_not_import_the_io_around_them() -> None:
    for package in ("protocol", "planner", "core"):
        for module in sorted((ROOT / package).glob("*.py")):
            for name in imported(module):
                assert not name.startswith(("aetherfs.net", "aetherfs.swarm", "trio")), (
                    module,
                    name,
                )


def test_each_module_imports_alone() -> None:
    """A cycle between the modules fails here (python-zeroconf's circular import test)."""
    names = ["aetherfs.net.transport"] + [
        f"aetherfs.swarm.{m.stem}" for m in sorted((ROOT / "swarm").glob("*.py"))
    ]
    for name in names:
        subprocess.run([sys.executable, "-c", f"import {name}"], check=True)
