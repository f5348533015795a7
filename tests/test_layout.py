"""The layout shows the flow, and imports only run along it.

Packages may import, besides themselves: ``client`` nothing of ours; ``build`` the client (its
contract and SAM's numpy pre/postprocessing); ``perf`` build and client; ``cli`` everything; nothing
imports ``cli``. Between the subpackages (``build.export``, ``client.transport``, ...) imports
form no cycle. Every import counts, also the lazy ones inside functions.
"""

from __future__ import annotations

import ast
import itertools
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("client", "build", "perf", "cli")
ALLOWED = {
    "client": set(),
    "build": {"client"},
    "perf": {"build", "client"},
    "cli": {"build", "client", "perf"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["sam_triton", *parts])


def source_files() -> Iterator[Path]:
    for top in TOP_PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "templates" not in path.parts:  # the python-backend model runs inside Triton, not in the package
                yield path


def imports_of(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, absolute module) of every sam_triton module ``path`` imports, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports pkg.mod when mod is a module of ours
            targets = [f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}") else module for alias in node.names]
        else:
            continue
        for target in targets:
            if target.startswith("sam_triton."):
                yield node.lineno, target


def _is_module(name: str) -> bool:
    parts = name.split(".")[1:]
    if not parts or parts[0] not in TOP_PACKAGES:
        return False
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def subpackage(module: str) -> str:
    """sam_triton.build.export.verify -> build.export; sam_triton.client.errors -> client."""
    parts = module.split(".")[1:]
    path = ROOT.joinpath(*parts)
    if (path / "__init__.py").is_file():
        return ".".join(parts)
    return ".".join(parts[:-1])


def test_packages_import_only_along_the_flow():
    wrong = []
    for path in source_files():
        top = path.relative_to(ROOT).parts[0]
        for line, target in imports_of(path):
            other = target.split(".")[1]
            if other != top and other not in ALLOWED[top]:
                wrong.append(
                    f"{path.relative_to(ROOT)}:{line} imports {target} ({top} may import {sorted(ALLOWED[top]) or 'nothing of ours'})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_subpackages():
    graph: Dict[str, Set[str]] = defaultdict(set)
    where: Dict[Tuple[str, str], str] = {}
    for path in source_files():
        source = subpackage(module_name(path)) if path.name != "__init__.py" else module_name(path).split(".", 1)[1]
        for line, target in imports_of(path):
            dest = subpackage(target)
            if dest != source and not source.startswith(dest + "."):
                graph[source].add(dest)
                where.setdefault((source, dest), f"{path.relative_to(ROOT)}:{line}")
    cycles = _cycles(graph)
    described = [" -> ".join(cycle) + "  (" + ", ".join(where[(a, b)] for a, b in itertools.pairwise(cycle)) + ")" for cycle in cycles]
    assert not cycles, "import cycles between subpackages:\n" + "\n".join(described)


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected group found by depth-first search (enough to fail and show it)."""
    found: List[List[str]] = []
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_distribution_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = sorted(module_name(init) for top in TOP_PACKAGES for init in (ROOT / top).rglob("__init__.py"))
    assert sorted(config["packages"]) == on_disk
    assert {f"sam_triton.{top}": top for top in TOP_PACKAGES} == config["package-dir"]


@pytest.mark.parametrize("top", ["build", "client", "perf", "cli"])
def test_code_folders_hold_no_measurements(top):
    """Measured results live in docs/studies/, where they can be linked, not beside the code."""
    results = [
        str(p.relative_to(ROOT))
        for p in (ROOT / top).rglob("*")
        if p.suffix in (".md", ".csv") or (p.suffix == ".json" and "data" not in p.parts)
    ]
    assert not results


def test_cycle_finder_finds_a_cycle():
    """The cycle check above can fail: a two-package loop is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def imported_test_modules(source: str, path: Path) -> List[str]:
    """The tests/ modules (dotted, from tests/) that test module ``path`` imports, relative imports resolved."""
    package = list(path.relative_to(ROOT).parent.parts)
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            found += [".".join(module)] + [".".join(module + [alias.name]) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.startswith("tests.")]


def _is_test_module(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test_") and (ROOT / (name.replace(".", "/") + ".py")).is_file()


def test_no_test_module_imports_another():
    """Shared helpers live in tests/helpers.py (or a helper module with a clear name), fixtures in conftest.py:
    a test module importing another would run (or hide) that module's tests twice."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        for name in imported_test_modules(path.read_text(), path)
        if _is_test_module(name)
    ]
    assert not offenders


def test_the_test_import_check_can_fail():
    path = ROOT / "tests" / "reliability" / "test_example.py"
    source = "from ..test_layout import ROOT\nfrom . import test_bad_requests\nfrom ..helpers import CLICK\n"
    assert [name for name in imported_test_modules(source, path) if _is_test_module(name)] == [
        "tests.test_layout",
        "tests.reliability.test_bad_requests",
    ]
