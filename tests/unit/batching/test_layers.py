"""The core's sub-packages import only downward, and no two modules import each other.

A reader who knows the layer of a package knows what it may depend on: ``api`` is the floor
(what the API accepts, returns and charges), ``land`` the top. An import that points upward,
or a cycle between two modules (even one hidden behind ``TYPE_CHECKING``), fails here with
the importing module and the import named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_claude_batch.batching as core

CORE = Path(core.__file__).parent
PREFIX = f"{core.__name__}."

#: sub-package -> layer. A module may import its own package and any package of a lower layer.
LAYERS: dict[str, int] = {
    "api": 0,
    "state": 1,
    "schema": 1,
    "wait": 1,
    "render": 2,
    "reuse": 3,
    "submit": 4,
    "land": 5,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[PREFIX + ".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The core modules a file imports, at any depth of the file (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def _package(module: str) -> str:
    return module.removeprefix(PREFIX).split(".")[0]


def test_every_module_of_the_core_sits_in_a_sub_package_with_a_layer() -> None:
    outside = sorted(m for m in _modules() if m.count(".") < 3 and _package(m) not in LAYERS)
    assert outside == [], "put these modules in a sub-package (and give a new sub-package its layer)"


def test_sub_packages_import_only_their_own_package_or_lower_layers() -> None:
    modules = _modules()
    upward = []
    for module, path in modules.items():
        here = _package(module)
        for imported in _imports(path, modules):
            there = _package(imported)
            if there != here and LAYERS[there] >= LAYERS[here]:
                upward.append(f"{module} imports {imported}")
    assert sorted(upward) == []


def test_no_two_modules_of_the_core_import_each_other() -> None:
    modules = _modules()
    graph = {m: {i for i in _imports(p, modules) if i != m and p.name != "__init__.py"} for m, p in modules.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
