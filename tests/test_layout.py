"""The package layout holds: imports flow one way (mmreward <- data_pipelines <- train/eval <- mmreward_tiny), the
general packages never name the embedded default, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"mmreward": 0, "data_pipelines": 1, "train": 2, "eval": 2, "mmreward_tiny": 3}


def imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at module level or inside functions."""
    graph: dict[str, set[str]] = {}
    for top in LAYERS:
        for path in (REPO / top).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                found |= {n for n in names if n.split(".")[0] in LAYERS}
            graph[module] = found
    return {m: {n for n in deps if n in graph and n != m} for m, deps in graph.items()}


def test_layers_import_downward_only():
    wrong = [
        (m, d) for m, deps in imports().items() for d in deps if LAYERS[d.split(".")[0]] > LAYERS[m.split(".")[0]]
    ]
    assert not wrong, wrong


def test_no_import_cycle():
    graph = imports()
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*stack, m, d]
            if d not in state and (cycle := visit(d, [*stack, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle)
