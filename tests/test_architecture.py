"""The house rules that a reader cannot check at a glance, checked on the source.

- no import cycle anywhere in gee_mining (grimp's graph, which counts imports inside functions too);
- imports at module top, except heavy optional dependencies deferred with a comment saying so;
- no function over 80 lines.
The layers themselves are import-linter contracts in pyproject.toml (``lint-imports``, run by ``make test``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gee_mining"
DEFERRED = ("torch", "torchvision", "tensorflow", "ultralytics")
MAX_LINES = 80


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _cycles(graph: grimp.ImportGraph) -> list[set[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(name)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.c", imported="a.d")
    assert _cycles(graph) == [{"a.b", "a.c"}]


def test_no_import_cycle_in_the_package():
    graph = grimp.build_graph("gee_mining", cache_dir=None)
    assert _cycles(graph) == []


def _deferred_comment(lines: list[str], index: int) -> bool:
    """Does the import on line ``index`` (0-based) say it is deferred: on its line, or in the comment above
    the block of imports it belongs to?"""
    if "deferred" in lines[index]:
        return True
    i = index - 1
    while i >= 0 and lines[i].strip().startswith(("import ", "from ")):
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#") and "deferred" in lines[i]


def _inner_imports(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                heavy = all(n.split(".")[0] in DEFERRED for n in names)
                said = _deferred_comment(lines, child.lineno - 1)
                if not (heavy and said):
                    found.append(
                        f"{path.relative_to(PACKAGE.parent)}:{child.lineno}: {lines[child.lineno - 1].strip()}"
                    )
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(text), False)
    return found


def test_imports_at_module_top():
    found = [line for path in _sources() for line in _inner_imports(path)]
    assert found == [], (
        "imports inside functions (only torch/ultralytics may be deferred, with a comment):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("def f():\n    import json\n", 1),
        ("def f():\n    # deferred: heavy optional dependency\n    import torch\n", 0),
        ("def f():\n    import torch\n", 1),
        ("def f():\n    # deferred: heavy\n    import torch\n    import ultralytics\n", 0),
        ("def f():\n    # deferred: heavy\n    import torch\n    x = 1\n    import ultralytics\n", 1),
        ("import json\n", 0),
    ],
)
def test_inner_import_check_is_real(tmp_path, text, expected):
    path = PACKAGE / "_probe_never_committed.py"
    try:
        path.write_text(text)
        assert len(_inner_imports(path)) == expected
    finally:
        path.unlink()


def test_no_function_over_80_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {size} lines")
    assert long == [], "\n".join(long)
