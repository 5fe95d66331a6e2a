"""The packages' import graph (docs/architecture.md): each layer imports only the layers
below it, and no module imports itself back through others.

    core (the domain) < tables (key-value stores, changelogs) < agents, api < app

Imports anywhere in a module count, those inside functions too: a late import that
dodges a cycle is still one."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"core": 0, "tables": 1, "agents": 2, "api": 2, "app": 3}
APART = {("agents", "api"), ("api", "agents")}  # same layer, and never each other


def modules() -> dict[str, Path]:
    """Every module of the five packages, by dotted name."""
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the five packages `path` imports: `from p import m` imports p.m
    when that is a module, else p itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def package(module: str) -> str:
    return module.split(".")[0]


def test_no_module_imports_a_higher_layer_or_its_sibling():
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in graph().items() for target in targets
                   if LAYERS[package(target)] > LAYERS[package(module)]
                   or (package(module), package(target)) in APART)
    assert wrong == []


def test_core_and_tables_import_only_what_is_below_them():
    below = {"core": set(), "tables": {"core"}}
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in graph().items() if package(module) in below
                   for target in targets
                   if package(target) != package(module)
                   and package(target) not in below[package(module)])
    assert wrong == []


def test_there_is_no_import_cycle():
    cycles = strongly_connected(graph())
    assert [sorted(c) for c in cycles if len(c) > 1] == []


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
    return found


@pytest.mark.parametrize(("edges", "cycles"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [{"a", "b", "c"}]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ({"a": {"a"}}, []),  # a module naming itself is no cycle of modules
])
def test_the_cycle_finder_finds_cycles_and_only_cycles(edges, cycles):
    assert [c for c in strongly_connected(edges) if len(c) > 1] == cycles


def test_the_graph_sees_the_imports_it_checks():
    # a known import of each kind, so an empty graph cannot pass the checks above
    edges = graph()
    assert "tables.changelog" in edges["agents.batches"]  # from tables.changelog import ...
    assert "api.main" in edges["app.main"]
    assert "app.logthrottle" in edges["app.runtime"]  # from app import logthrottle
    assert "app.main" in edges["app"]  # inside a function


def package_edges() -> dict[tuple[str, str], int]:
    """How many module imports go from each package to each other: the picture in
    docs/architecture.md (`python -m tests.unit.test_layers` prints it)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for module, targets in graph().items():
        for target in targets:
            if package(target) != package(module):
                counts[package(module), package(target)] += 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    for (source, target), count in package_edges().items():
        print(f"{source:>6} -> {target:<6} {count:3d} imports")
