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
    assert "negseq.checkpoints" in graph["negseq.analysis.one_user"]  # imported inside load_model
    assert "negseq.layout" in graph["negseq.cli"]  # from negseq import layout
    assert graph["negseq.layout"] == set(), "the layout module is a leaf"


def test_negseq_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


# -- layers: training code loads no notebook helper and no experiment runner --

TRAINING = ("negseq.cli", "negseq.module", "negseq.callbacks", "negseq.tracking")
NOT_FOR_TRAINING = ("negseq.analysis", "negseq.experiments")


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``training -> forbidden`` for each training module that reaches analysis/ or the experiment runner."""
    return [
        f"{module} -> {target}"
        for module in TRAINING
        for target in sorted(reachable(graph, module))
        if any(target == layer or target.startswith(layer + ".") for layer in NOT_FOR_TRAINING)
    ]


def test_layer_check_sees_an_indirect_import_of_the_notebook_layer():
    graph = {"negseq.cli": {"negseq.tracking"}, "negseq.tracking": {"negseq.analysis.runs"}, "negseq.analysis.runs": {"negseq.experiments"}}
    assert layer_violations(graph) == [
        "negseq.cli -> negseq.analysis.runs", "negseq.cli -> negseq.experiments",
        "negseq.tracking -> negseq.analysis.runs", "negseq.tracking -> negseq.experiments",
    ]
    assert layer_violations({"negseq.cli": {"negseq.layout"}, "negseq.analysis": {"negseq.cli"}}) == []  # the allowed direction


def test_training_imports_nothing_of_analysis_or_experiments():
    violations = layer_violations(import_graph())
    if violations:
        pytest.fail("training code imports notebook or runner code: " + "; ".join(violations))


def test_the_data_layer_imports_only_itself_and_the_errors():
    """Logs to tensors knows nothing of models, training or serving: they read it, never the other way round."""
    graph = import_graph()
    outside = {f"{module} -> {target}" for module in graph if module.startswith("negseq.data") for target in graph[module]
               if not target.startswith("negseq.data") and target != "negseq.errors"}
    assert not outside, sorted(outside)


MODEL_LAYER = ("negseq.models", "negseq.losses", "negseq.ranking", "negseq.ranking_weights", "negseq.metrics", "negseq.responsiveness", "negseq.objectives")


def in_layer(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == top or module.startswith(top + ".") for top in layer)


def imports_outside(graph: dict[str, set[str]], layer: tuple[str, ...], allowed: tuple[str, ...] = ("negseq.errors", "negseq.deprecation")) -> list[str]:
    """``module -> target`` for each import of a ``layer`` module that leaves the layer (``allowed`` targets aside)."""
    return sorted(f"{module} -> {target}" for module in graph if in_layer(module, layer) for target in graph[module]
                  if not in_layer(target, layer) and target not in allowed)


def test_the_layer_check_sees_a_family_that_reads_the_data_layer():
    graph = {"negseq.models.families.x": {"negseq.data.reading", "negseq.losses", "negseq.errors"}, "negseq.cli": {"negseq.models"}}
    assert imports_outside(graph, MODEL_LAYER) == ["negseq.models.families.x -> negseq.data.reading"]


def test_the_model_layer_imports_only_itself_and_the_errors():
    """The network, its families, losses, ranking and metrics know nothing of data files, training, serving or tools
    (the errors and the deprecated paths' helper are leaves)."""
    outside = imports_outside(import_graph(), MODEL_LAYER)
    assert not outside, outside
