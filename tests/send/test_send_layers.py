"""The send declares what it needs (mailer.send.ports) and never reaches into the store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SEND = REPO / "mailer" / "send"
STORE = REPO / "mailer" / "store"


def _loaded_after(module: str) -> list[str]:
    """The modules a fresh interpreter holds after ``import module``."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    )
    return out.stdout.split()


@pytest.mark.parametrize("module", ["mailer.send.run", "mailer.send.service", "mailer.send.ports"])
def test_the_send_loads_no_database_code(module: str) -> None:
    loaded = _loaded_after(module)
    assert module in loaded
    assert [m for m in loaded if m.split(".")[0] in {"sqlalchemy", "alembic"}] == []
    assert [m for m in loaded if m.startswith("mailer.store")] == []


def test_the_ports_load_only_the_standard_library_and_the_errors() -> None:
    at_start = set(_loaded_after("sys"))  # what the interpreter loads by itself (site, .pth)
    loaded = set(_loaded_after("mailer.send.ports")) - at_start
    outside = {m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == {"mailer", "mailer.errors", "mailer.send", "mailer.send.ports"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (functions, TYPE_CHECKING blocks too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            names.add(node.module)
            # `from mailer import store` imports mailer.store too
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_send_imports_nothing_of_the_store_the_cli_or_the_web() -> None:
    files = sorted(SEND.rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        for name in _imports(path):
            for banned in (
                "mailer.store",
                "mailer.cli",
                "mailer.web",
                "sqlalchemy",
                "typer",
                "rich",
            ):
                assert not _under(name, banned), f"{path.relative_to(REPO)} imports {name}"


def test_the_store_takes_only_the_ports_from_the_send() -> None:
    files = sorted(STORE.rglob("*.py"))
    used = {
        (path.relative_to(REPO).as_posix(), name)
        for path in files
        for name in _imports(path)
        if _under(name, "mailer.send")
    }
    assert ("mailer/store/ledger.py", "mailer.send.ports") in used  # it implements them
    assert [(path, name) for path, name in used if not _under(name, "mailer.send.ports")] == []
