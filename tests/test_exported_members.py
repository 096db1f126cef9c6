"""Each package's public surface is its ``__all__``: complete, sorted, every name real.

httpx's tests/test_exported_members.py habit. mailer.send and mailer.store are different:
their ``__init__`` imports nothing (importing a light module of theirs must stay light), so
their surface is the list of their modules that other packages may import, and the import
graph shows that nobody reaches past it.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import grimp
import pytest

PACKAGES = [
    "mailer.bounces",
    "mailer.check",
    "mailer.cli",
    "mailer.compose",
    "mailer.send",
    "mailer.store",
    "mailer.web",
]
MODULE_SURFACES = ["mailer.bounces", "mailer.send", "mailer.store"]


def exported(package: str) -> list[str]:
    names: list[str] = importlib.import_module(package).__all__
    return names


def bound_names(init: Path) -> set[str]:
    """Names the file binds at module level: imports (not __future__), defs, assignments."""
    names: set[str] = set()
    statements = list(ast.parse(init.read_text(encoding="utf-8")).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If | ast.Try):
            statements += node.body + node.orelse
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names - {"__all__"}


def is_own_module(package: ModuleType, name: str) -> bool:
    value = getattr(package, name, None)
    return isinstance(value, ModuleType) and value.__name__ == f"{package.__name__}.{name}"


def ruff_order(name: str) -> tuple[int, str]:
    """RUF022's isort-style order: CONSTANTS, then Classes, then everything else."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_without_repeats(package: str) -> None:
    names = exported(package)
    assert names == sorted(set(names), key=ruff_order)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_every_public_name_the_init_defines_or_imports(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    public = {name for name in bound_names(Path(module.__file__)) if not name.startswith("_")}
    # A submodule imported for its side effect (the CLI's commands) is not re-exported.
    public = {name for name in public if not is_own_module(module, name)}
    assert public - set(exported(package)) == set()


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_exists(package: str) -> None:
    module = importlib.import_module(package)
    for name in exported(package):
        if not hasattr(module, name):
            importlib.import_module(f"{package}.{name}")  # a module of the package


@pytest.mark.parametrize("package", MODULE_SURFACES)
def test_a_module_surface_lists_modules_and_its_init_imports_nothing(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert bound_names(Path(module.__file__)) == set()
    for name in exported(package):
        assert importlib.import_module(f"{package}.{name}").__name__ == f"{package}.{name}"
    code = (
        f"import sys; before = set(sys.modules); import {package}; "
        "loaded = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(loaded - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['mailer']", f"importing {package} loads more than the stdlib"


@pytest.mark.parametrize("package", MODULE_SURFACES)
def test_other_packages_import_only_the_listed_modules(package: str) -> None:
    graph = grimp.build_graph("mailer", cache_dir=None)
    surface = set(exported(package))
    inside = {m for m in graph.modules if m.startswith(f"{package}.")}
    reached = {
        (importer, imported)
        for imported in inside
        for importer in graph.find_modules_that_directly_import(imported)
        if importer != package and not importer.startswith(f"{package}.")
    }
    assert reached, "the test would pass vacuously"
    past = {(a, b) for a, b in reached if b.split(".")[2] not in surface}
    assert past == set(), f"imports of modules missing from {package}.__all__"
