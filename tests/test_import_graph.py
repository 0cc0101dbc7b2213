"""The package's import graph (every ``import`` of negseq/**/*.py, at module level or inside a function) has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "negseq"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: negseq modules it imports}``; ``from negseq.x import name`` counts as importing ``negseq.x``
    (or ``negseq.x.name`` when that is a module), and importing ``negseq.a.b`` also runs ``negseq.a``."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                parents = [".".join(target.split(".")[:i]) for i in range(1, target.count(".") + 2)]
                graph[name] |= {parent for parent in parents if parent in modules and parent != name and not name.startswith(parent + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search with colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions_and_from_imports():
    graph = import_graph()
    assert "negseq.training.checkpoints" in graph["negseq.analysis.one_user"]  # imported inside load_model
    assert "negseq.layout" in graph["negseq.training.cli"]  # from negseq import layout
    assert graph["negseq.layout"] == set(), "the layout module is a leaf"


def test_negseq_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


# -- layers: each sub-package imports only the layers below it (docs/architecture.md) --

LEAVES = ("negseq.errors", "negseq.layout", "negseq.deprecation")  # import nothing of negseq; anything may import them
LAYERS = {  # package -> the packages it may import besides itself and the leaves, lowest layer first
    "negseq.data": (),
    "negseq.models": (),
    "negseq.evaluation": ("negseq.models",),
    "negseq.training": ("negseq.data", "negseq.models", "negseq.evaluation"),
    "negseq.serving": ("negseq.data", "negseq.models", "negseq.training"),
    "negseq.studies": ("negseq.data", "negseq.models", "negseq.evaluation", "negseq.training", "negseq.serving"),
    "negseq.analysis": ("negseq.data", "negseq.models", "negseq.evaluation", "negseq.training", "negseq.serving", "negseq.studies"),
}


def package_of(module: str) -> str | None:
    return next((package for package in (*LAYERS, *LEAVES) if module == package or module.startswith(package + ".")), None)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``module -> target`` for each import by a layer's module of a package that layer may not import."""
    return sorted(
        f"{module} -> {target}"
        for module in graph if (layer := package_of(module)) in LAYERS
        for target in graph[module] if (package_of(target) or target) not in (layer, *LEAVES, *LAYERS[layer])
    )


def test_the_layers_are_an_order_and_the_leaves_are_leaves():
    """A layer may import only layers declared before it, so no two layers can import each other."""
    order = list(LAYERS)
    for position, (layer, below) in enumerate(LAYERS.items()):
        assert all(order.index(lower) < position for lower in below), layer
    graph = import_graph()
    assert all(graph[leaf] == set() for leaf in LEAVES)


def test_the_layer_check_sees_a_lower_layer_importing_a_higher_one():
    graph = {
        "negseq.models.families.x": {"negseq.data.reading", "negseq.models.losses", "negseq.errors"},
        "negseq.training.cli": {"negseq.models", "negseq.studies.runner"},
        "negseq.studies.compare": {"negseq.training.module", "negseq.layout"},
    }
    assert layer_violations(graph) == ["negseq.models.families.x -> negseq.data.reading", "negseq.training.cli -> negseq.studies.runner"]


def test_every_module_is_in_a_layer_or_is_an_entry_point():
    """negseq/ holds the layers' packages, the leaves and a handful of entry points (``python -m negseq.X``) and shims."""
    top_level = sorted(module for module in import_graph() if package_of(module) is None)
    assert top_level == ["negseq", "negseq.__main__", "negseq.compare", "negseq.experiments", "negseq.fit", "negseq.synthetic"]


def test_no_layer_imports_a_higher_one():
    violations = layer_violations(import_graph())
    assert not violations, violations
