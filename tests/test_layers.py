"""The layers of the package, as one table: which part may import which, checked against every
module of aetherfs; and no import cycle, between modules or between packages.

Every import counts, wherever it stands in a file: inside a function or under TYPE_CHECKING, an
import is still a dependency of design (as python-zeroconf's `tests/test_circular_imports.py`
holds). The table is the one `docs/architecture.md` states under "Rules across boundaries"; a
test keeps the two the same. A new top-level module or package of aetherfs fails here until it
has a row.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import aetherfs

ROOT = Path(aetherfs.__file__).parent
DOC = ROOT.parent / "docs" / "architecture.md"

# No clock, socket, thread or randomness: the simulator and a relay drive these on their own.
SANS_IO = frozenset(
    {"anyio", "asyncio", "datetime", "os", "random", "select", "selectors", "socket", "ssl"}
    | {"subprocess", "threading", "time", "trio"}
)
# Core may touch a file or a lock (a block's lazy key, the manifest's stat bits), never the
# network or a clock.
NO_NETWORK_OR_CLOCK = SANS_IO - {"datetime", "os", "threading"}


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    # Paths under aetherfs/: "core/" is every module under it, "keys.py" one module.
    members: tuple[str, ...]
    # Layer names, or paths of single modules when only part of a layer may be used.
    may_import: tuple[str, ...] = ()
    # Top-level modules outside aetherfs (stdlib or third party) it must not import.
    forbidden: frozenset[str] = frozenset()


BASE = ("core", "errors", "store", "config", "http")
BELOW_THE_TOP = (*BASE, "repository", "fetch", "ops", "protocol", "planner", "net", "swarm")
LAYERS = (
    Layer("package", ("__init__.py",)),
    Layer("errors", ("errors.py",)),
    Layer("core", ("core/",), ("errors",), NO_NETWORK_OR_CLOCK),
    Layer("protocol", ("protocol/",), ("core", "errors"), SANS_IO),
    Layer("planner", ("planner/",), ("core", "errors"), SANS_IO),
    Layer("store", ("store/",), ("core", "errors")),
    Layer("config", ("config.py",), ("core", "errors")),
    Layer("http", ("http/",), ("core", "errors")),
    Layer("repository", ("repository/", "keys.py"), BASE),
    Layer("fetch", ("fetch/",), (*BASE, "repository")),
    Layer("ops", ("ops/", "trust.py"), (*BASE, "repository", "fetch", "protocol")),
    Layer("net", ("net/",), ("core", "errors", "protocol")),
    Layer("swarm", ("swarm/",), ("core", "errors", "protocol", "planner", "net/transport.py")),
    Layer("agent", ("agent/",), BELOW_THE_TOP),
    Layer("hub", ("hub/",), BELOW_THE_TOP),
    Layer("cli", ("cli/",), (*BELOW_THE_TOP, "agent", "hub")),
)

# Imports that break the table today, each with why it stays for now: (importer, imported).
# A test fails once one is gone, so the list cannot outlive its reason.
KNOWN_EXCEPTIONS: Mapping[tuple[str, str], str] = {}


# --- The import graph (the logic of ../shared/tools/import_cycles.py, kept here for CI) ---


def modules(package: Path, prefix: str) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (generated gRPC stubs included)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((prefix, *parts))] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name `name`'s file imports, at any depth, relative imports resolved."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return targets


def imported(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of `known` that `name` imports (a package importing its parent is fine)."""
    out = set()
    for target in imported_names(name, path):
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def import_graph(known: Mapping[str, Path]) -> dict[str, set[str]]:
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
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

    for v in list(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def by_package(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The graph between first-level packages and modules (aetherfs.fetch, aetherfs.keys, ...)."""

    def group(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for name, deps in graph.items():
        out.setdefault(group(name), set()).update(group(d) for d in deps if group(d) != group(name))
    return out


# --- The table applied to a package ---


def member_path(name: str, known: Mapping[str, Path], package: Path) -> str:
    """ "core/ids.py", "keys.py", "__init__.py": a module as the table names it."""
    return known[name].relative_to(package).as_posix()


def layer_of(path: str, layers: Iterable[Layer] = LAYERS) -> Layer | None:
    for layer in layers:
        if any(path == m or (m.endswith("/") and path.startswith(m)) for m in layer.members):
            return layer
    return None


def allowed(importer: Layer, target_path: str, target: Layer) -> bool:
    if target is importer or target.name in importer.may_import:
        return True
    # A single module of a layer may be named, and so the packages it stands in.
    package = target_path.removesuffix("__init__.py")
    return any(
        entry == target_path or (package and package != target_path and entry.startswith(package))
        for entry in importer.may_import
    )


def violations(package: Path, prefix: str, layers: tuple[Layer, ...] = LAYERS) -> list[str]:
    """Every import of the package that its layer's row does not allow, as "a -> b" lines."""
    known = modules(package, prefix)
    found = []
    for name, deps in import_graph(known).items():
        here = layer_of(member_path(name, known, package), layers)
        assert here is not None, f"{name} has no row in the layer table"
        for dep in sorted(deps):
            path = member_path(dep, known, package)
            there = layer_of(path, layers)
            assert there is not None, f"{dep} has no row in the layer table"
            if not allowed(here, path, there):
                found.append(f"{name} -> {dep}")
    return found


def forbidden_imports(package: Path, prefix: str, layers: tuple[Layer, ...] = LAYERS) -> list[str]:
    known = modules(package, prefix)
    found = []
    for name, path in known.items():
        layer = layer_of(member_path(name, known, package), layers)
        assert layer is not None, f"{name} has no row in the layer table"
        for target in sorted(imported_names(name, path)):
            if target.split(".")[0] in layer.forbidden:
                found.append(f"{name} -> {target}")
    return sorted(set(found))


def reachable(layer: Layer) -> set[str]:
    """The layers whose modules importing `layer`'s may load, itself included."""
    by_name = {x.name: x for x in LAYERS}
    seen, todo = set(), [layer]
    while todo:
        current = todo.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        for entry in current.may_import:
            target = by_name.get(entry) or layer_of(entry)
            assert target is not None, entry
            todo.append(target)
    return seen | {"package"}


KNOWN = modules(ROOT, "aetherfs")
GRAPH = import_graph(KNOWN)


# --- The rules, on the real package ---


def test_every_module_has_exactly_one_row() -> None:
    for name in KNOWN:
        path = member_path(name, KNOWN, ROOT)
        rows = [x.name for x in LAYERS if layer_of(path, (x,))]
        assert len(rows) == 1, f"{name} is in the rows {rows}: give it exactly one"


def test_the_table_is_a_stack_of_layers() -> None:
    """Every entry names a row or a module, and no two rows allow each other, even by steps."""
    names = {x.name for x in LAYERS}
    paths = {member_path(name, KNOWN, ROOT) for name in KNOWN}
    graph: dict[str, set[str]] = {}
    for layer in LAYERS:
        for entry in layer.may_import:
            assert entry in names or entry in paths, f"{layer.name}: {entry} is not a row or module"
            target = layer_of(entry) if entry in paths else None
            graph.setdefault(layer.name, set()).add(target.name if target else entry)
    assert cycles(graph) == []
    assert not [x.name for x in LAYERS if x.name in graph.get(x.name, ())]


@functools.cache
def broken_here() -> tuple[str, ...]:
    return tuple(violations(ROOT, "aetherfs"))


def layer_name(module: str) -> str:
    layer = layer_of(member_path(module, KNOWN, ROOT))
    assert layer is not None, module
    return layer.name


@pytest.mark.parametrize("layer", [x.name for x in LAYERS])
def test_imports_follow_the_table(layer: str) -> None:
    broken = [
        line
        for line in broken_here()
        if layer_name(line.split(" -> ")[0]) == layer
        and tuple(line.split(" -> ")) not in KNOWN_EXCEPTIONS
    ]
    assert broken == [], "imports the layer table forbids:\n" + "\n".join(broken)


def test_known_exceptions_are_still_needed() -> None:
    broken = set(broken_here())
    gone = [edge for edge in KNOWN_EXCEPTIONS if " -> ".join(edge) not in broken]
    assert gone == [], f"no longer broken, remove from KNOWN_EXCEPTIONS and the doc: {gone}"


def test_sans_io_layers_import_no_clock_socket_or_thread() -> None:
    assert forbidden_imports(ROOT, "aetherfs") == []


def test_no_import_cycle_between_modules() -> None:
    assert len(GRAPH) > 50
    assert cycles(GRAPH) == []


def test_no_import_cycle_between_packages() -> None:
    packages = by_package(GRAPH)
    assert {"aetherfs.agent", "aetherfs.hub", "aetherfs.keys"} <= set(packages)
    assert cycles(packages) == []


def test_nothing_in_the_agent_imports_its_composition_root() -> None:
    root = "aetherfs.agent.daemon"
    assert GRAPH[root]  # it imports the parts
    inside = [n for n, deps in GRAPH.items() if root in deps and n.startswith("aetherfs.agent.")]
    assert inside == []


def _loads(name: str) -> tuple[str, str | list[str]]:
    script = (
        f"import json, sys, {name}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'aetherfs')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode != 0:
        return name, f"{name}: {done.stderr.strip().splitlines()[-1]}"
    return name, list(json.loads(done.stdout))


def test_every_module_imports_alone_and_loads_only_its_layers() -> None:
    """In a fresh interpreter each, so a cycle that bites in one import order fails here, and a
    dynamic import the parse cannot see is caught by what it loads."""
    names = sorted(n for n in KNOWN if "_pb2" not in n)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores, shared
        results = list(pool.map(_loads, names))
    failures = [r for _, r in results if isinstance(r, str)]
    assert not failures, "\n".join(failures)
    # An excepted import loads its target's parent packages too.
    excepted = {edge[1] for edge in KNOWN_EXCEPTIONS}
    above = []
    for name, loaded in results:
        layer = layer_of(member_path(name, KNOWN, ROOT))
        assert layer is not None
        may = reachable(layer)
        for other in loaded:
            if other not in KNOWN:
                continue  # not a file of ours (a stub module a library registers)
            there = layer_of(member_path(other, KNOWN, ROOT))
            assert there is not None
            if there.name not in may and not any(
                (e + ".").startswith(other + ".") for e in excepted
            ):
                above.append(f"importing {name} loads {other}")
    assert above == [], "\n".join(above[:40])


# --- The document states the same table ---


def doc_table() -> dict[str, tuple[set[str], set[str]]]:
    """The rows of the table under "Rules across boundaries": layer -> (members, may import)."""
    text = DOC.read_text()
    section = text.split("Rules across boundaries", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("layer", "") or set(cells[0]) <= {"-", " "}:
            continue
        code = [set(re.findall(r"`([^`]+)`", c)) for c in cells[1:3]]
        members = {m.removeprefix("aetherfs/") for m in code[0]}
        rows[cells[0].strip("`")] = (members, {m.removeprefix("aetherfs/") for m in code[1]})
    return rows


def test_the_architecture_document_states_this_table() -> None:
    stated = doc_table()
    table = {x.name: (set(x.members), set(x.may_import)) for x in LAYERS}
    assert stated == table


def test_the_document_lists_the_known_exceptions() -> None:
    text = DOC.read_text()
    for importer, target in KNOWN_EXCEPTIONS:
        assert f"`{importer}` → `{target}`" in text, (importer, target)


# --- The checks see a broken rule (on a copy of the real package) ---


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT, tmp_path / "aetherfs", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "aetherfs"


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code)


def test_the_check_sees_imports_anywhere_in_a_file(copy: Path) -> None:
    before = set(violations(copy, "aetherfs"))
    _append(copy / "core/ids.py", "if TYPE_CHECKING:\n    from aetherfs.hub.service import X\n")
    _append(copy / "planner/pieces.py", "def f():\n    from ..ops import pull\n")
    _append(copy / "fetch/cache.py", "import aetherfs.agent.daemon\n")
    _append(copy / "swarm/engine.py", "from aetherfs.net import discovery, transport\n")
    _append(copy / "agent/api.py", "from aetherfs import hub\n")
    added = set(violations(copy, "aetherfs")) - before
    assert added == {
        "aetherfs.core.ids -> aetherfs.hub.service",
        "aetherfs.planner.pieces -> aetherfs.ops",  # a from-import loads the package too
        "aetherfs.planner.pieces -> aetherfs.ops.pull",
        "aetherfs.fetch.cache -> aetherfs.agent.daemon",
        "aetherfs.swarm.engine -> aetherfs.net.discovery",
        "aetherfs.agent.api -> aetherfs.hub",
    }


def test_the_check_sees_a_clock_in_a_sans_io_layer(copy: Path) -> None:
    _append(copy / "protocol/frames.py", "def f():\n    import time\n")
    _append(copy / "core/names.py", "import socket\n")
    assert forbidden_imports(copy, "aetherfs") == [
        "aetherfs.core.names -> socket",
        "aetherfs.protocol.frames -> time",
    ]


def test_the_check_wants_a_row_for_a_new_package(copy: Path) -> None:
    (copy / "relay").mkdir()
    (copy / "relay/__init__.py").write_text("")
    with pytest.raises(AssertionError, match=r"aetherfs\.relay has no row"):
        violations(copy, "aetherfs")


def test_the_cycle_checks_see_a_cycle(copy: Path) -> None:
    _append(copy / "core/ids.py", "def f():\n    from aetherfs.store import layout\n")
    graph = import_graph(modules(copy, "aetherfs"))
    assert cycles(graph) == [["aetherfs.core.ids", "aetherfs.store.layout"]]
    assert cycles(by_package(graph)) == [["aetherfs.core", "aetherfs.store"]]


def test_the_cycle_check_counts_type_checking_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import B\n"
    )
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "c.py").write_text("import p.a\n")
    assert cycles(import_graph(modules(tmp_path, "p"))) == [["p.a", "p.b"]]
