"""The planner is pure: it imports only aetherfs.core and aetherfs.errors, and no clock."""

import ast
import sys
from pathlib import Path

import aetherfs.planner

PACKAGE = Path(aetherfs.planner.__file__).parent
ALLOWED_THIRD_PARTY = {"blake3"}
FORBIDDEN_STDLIB = {"time", "datetime", "socket", "threading", "asyncio", "os", "random"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_planner_imports_only_core_errors_and_itself() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        for name in imported(module):
            top = name.split(".")[0]
            if top == "aetherfs":
                assert name.startswith(("aetherfs.core", "aetherfs.errors", "aetherfs.planner")), (
                    module.name,
                    name,
                )
            elif top in sys.stdlib_module_names:
                assert top not in FORBIDDEN_STDLIB, (module.name, name)
            else:
                assert top in ALLOWED_THIRD_PARTY, (module.name, name)
