"""The package's imports form layers: nothing imports upward and no modules import each other
in a circle (lazy imports inside functions included). No function in `server/` is longer than
40 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "context_kit_service"
FOUNDATION = 0
LAYERS = {
    "settings": FOUNDATION,
    "provider_errors": FOUNDATION,
    "local_models": FOUNDATION,
    "providers": FOUNDATION,
    "configuration": FOUNDATION,
    "checkpointer": FOUNDATION,
    "validators": FOUNDATION,
    "endpoints": FOUNDATION,
    "repository": 1,
    "retrieval": 2,
    "tools": 3,
    "graphs": 4,
    "server": 5,
    "evaluation": 6,
    "cli": 6,
    "main": 7,
    "__init__": 7,
    "__main__": 7,
}
"""Lowest first: a module may import its own layer and those below it, never one above."""


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """The package's modules `tree` imports (`from package import module` is the module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("context_kit_service."):
                base = node.module.removeprefix("context_kit_service.")
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    names.add(submodule if submodule in modules else base)
        elif isinstance(node, ast.Import):
            names.update(
                a.name.removeprefix("context_kit_service.")
                for a in node.names
                if a.name.startswith("context_kit_service.")
            )
    return names


MODULES = _modules()
GRAPH = {
    name: {target for target in _imports(tree, set(MODULES)) if target != name}
    for name, tree in MODULES.items()
}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_every_module_has_a_layer() -> None:
    assert sorted({m.split(".")[0] for m in MODULES} - set(LAYERS)) == []


def test_nothing_imports_upward() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(source)
    )
    assert upward == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(GRAPH[module]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(GRAPH):
        if module not in done:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("server")))
def test_server_functions_fit_on_a_screen(module: str) -> None:
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"  # type: ignore[operator]
        for node in ast.walk(MODULES[module])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 40  # type: ignore[operator]
    ]
    assert long == []
