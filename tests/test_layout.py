"""The package's shape (docs/architecture.md): no import circle, and every import points down the layer order
data -> logic -> text -> model -> eval -> train -> tools. Function-level and ``TYPE_CHECKING`` imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "faceinsight"

# Each layer may import its own and the layers before it, never a later one.
LAYERS = [
    ("faceinsight", "faceinsight.vocab"),
    ("faceinsight.data",),
    ("faceinsight.logic",),
    ("faceinsight.text",),
    ("faceinsight.model",),
    ("faceinsight.eval",),
    ("faceinsight.train",),
    ("faceinsight.tools", "faceinsight.cli"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def owner(name: str) -> str | None:
    """The package module that ``name`` (a module, or a name inside one) resolves to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """The package modules ``module`` imports anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {owner(a.name) for a in node.names if a.name.startswith("faceinsight")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base.startswith("faceinsight"):
                found |= {owner(f"{base}.{a.name}") for a in node.names}
    return {m for m in found if m is not None and m != module}


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    graph.add_edges_from((m, d) for m in MODULES for d in imports(m))
    return graph


def layer(module: str) -> int:
    """The index of the layer ``module`` belongs to (the longest matching prefix wins)."""
    matches = [
        (len(prefix), i)
        for i, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def test_no_import_circle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import circles: {cycles}"


def test_imports_point_down_the_layers():
    upward = [
        f"{a} -> {b}"
        for a, b in import_graph().edges
        if layer(b) > layer(a) and a != "faceinsight"  # the package root imports nothing of its own
    ]
    assert not upward, "imports against the layer order data -> logic -> text -> model -> eval -> train -> tools:\n" + (
        "\n".join(upward)
    )


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer(module)  # raises when no layer claims it
