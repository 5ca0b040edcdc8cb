"""Every module of the package imports alone, in a fresh interpreter (as python-zeroconf's
`tests/test_circular_imports.py` does), so an import cycle that only bites in some import order
fails here, not in production; and the agent's modules form no import cycle at all, counting
imports under TYPE_CHECKING and inside functions (a cycle there is still one of design)."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aetherfs

ROOT = Path(aetherfs.__file__).parent


def modules(package: Path, prefix: str) -> dict[str, Path]:
    """Dotted name -> file, generated gRPC stubs left out."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        if "_pb2" in path.name:
            continue
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((prefix, *parts))] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `name` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    out = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_imports_alone() -> None:
    def import_alone(name: str) -> str | None:
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, text=True
        )
        return None if done.returncode == 0 else f"{name}: {done.stderr.strip().splitlines()[-1]}"

    names = sorted(modules(ROOT, "aetherfs"))
    assert len(names) > 50
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores, shared
        failures = [f for f in pool.map(import_alone, names) if f]
    assert not failures, "\n".join(failures)


def test_no_import_cycle_inside_the_agent() -> None:
    agent = modules(ROOT / "agent", "aetherfs.agent")
    graph = {name: imported(name, path, agent) for name, path in agent.items()}
    assert graph["aetherfs.agent.daemon"]  # the composition root imports the parts
    assert cycles(graph) == []
    # Nothing in the agent imports its composition root.
    assert not [name for name, deps in graph.items() if "aetherfs.agent.daemon" in deps]


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import B\n"
    )
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "c.py").write_text("import p.a\n")
    found = modules(tmp_path, "p")
    graph = {name: imported(name, path, found) for name, path in found.items()}
    assert cycles(graph) == [["p.a", "p.b"]]
