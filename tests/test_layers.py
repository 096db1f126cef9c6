"""The import contracts ([tool.importlinter] in pyproject.toml) hold, and they bite.

Each violation is written into a copy of the package and checked with the project's own
contracts by `lint-imports`, which reads the real import graph (grimp), also the imports
inside functions. The copy comes first on PYTHONPATH, so the editable install is not read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"
CONTRACTS = 16


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package and pyproject.toml in ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def broken(output: str) -> set[str]:
    return set(re.findall(r"(?m)^(.+) BROKEN\b", output))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break."""
    shutil.copytree(
        REPO / "mailer", tmp_path / "mailer", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


def test_the_unmodified_copy_keeps_every_contract(tree: Path) -> None:
    """The copy is checked as it is, so the failures below come from the lines they add."""
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


# (module file, line added, the contract that must break, the import it must name)
VIOLATIONS = [
    (
        "compose/text.py",
        "import sqlalchemy",
        "sqlalchemy and alembic only in mailer.store",
        "mailer.compose.text -> sqlalchemy",
    ),
    (
        "compose/text.py",
        "from mailer.store import db",
        "Layers:",
        "mailer.compose.text -> mailer.store.db",
    ),
    (
        "store/db.py",
        "from mailer.compose import pipeline",
        "Layers:",
        "mailer.store.db -> mailer.compose.pipeline",
    ),
    (
        "web/feed.py",
        "from mailer.send import message",
        "Layers:",
        "mailer.web.feed -> mailer.send.message",
    ),
    ("config.py", "from mailer import tokens", "Layers:", "mailer.config -> mailer.tokens"),
    ("errors.py", "import mailer.config", "Layers:", "mailer.errors -> mailer.config"),
    (
        "send/message.py",
        "from mailer.store import models",
        "mailer.send never imports the store",
        "mailer.send.message -> mailer.store.models",
    ),
    (
        "send/ports.py",
        "from mailer import config",
        "mailer.send.ports imports nothing of mailer but mailer.errors",
        "mailer.send.ports -> mailer.config",
    ),
    (
        "store/ledger.py",
        "from mailer.send import run",
        "Layers:",
        "mailer.store.ledger -> mailer.send.run",
    ),
    (
        "send/message.py",
        "import smtplib",
        "smtplib only in mailer.send.transport",
        "mailer.send.message -> smtplib",
    ),
    (
        "store/db.py",
        "import mjml",
        "mjml, premailer and markdown-it only in mailer.compose",
        "mailer.store.db -> mjml",
    ),
    (
        "cli/app.py",
        "import premailer",
        "mjml, premailer and markdown-it only in mailer.compose",
        "mailer.cli.app -> premailer",
    ),
    (
        "web/pages.py",
        "import markdown_it",
        "mjml, premailer and markdown-it only in mailer.compose",
        "mailer.web.pages -> markdown_it",
    ),
    (
        "compose/markdown.py",
        "import PIL",
        "Pillow only in mailer.compose.images",
        "mailer.compose.markdown -> PIL",
    ),
    (
        "send/message.py",
        "import jinja2",
        "jinja2 only in mailer.compose and mailer.web",
        "mailer.send.message -> jinja2",
    ),
    (
        "web/pages.py",
        "import babel",
        "babel only in mailer.compose",
        "mailer.web.pages -> babel",
    ),
    (
        "cli/app.py",
        "import starlette",
        "starlette and uvicorn only in mailer.web and mailer.preview",
        "mailer.cli.app -> starlette",
    ),
    (
        "compose/build.py",
        "import uvicorn",
        "starlette and uvicorn only in mailer.web and mailer.preview",
        "mailer.compose.build -> uvicorn",
    ),
    ("send/run.py", "import rich", "typer and rich only in mailer.cli", "mailer.send.run -> rich"),
    ("config.py", "import typer", "typer and rich only in mailer.cli", "mailer.config -> typer"),
    (
        "send/transport.py",
        "import aiosmtpd",
        "aiosmtpd only in mailer.send.sink",
        "mailer.send.transport -> aiosmtpd",
    ),
    (
        "send/message.py",
        "from mailer.check import run",
        "Layers:",
        "mailer.send.message -> mailer.check.run",
    ),
    (
        "check/run.py",
        "from mailer.cli import app",
        "Layers:",
        "mailer.check.run -> mailer.cli.app",
    ),
    (
        "check/source.py",
        "import http.client",
        "http (client and server) only in mailer.check.links and mailer.preview",
        "mailer.check.source -> http",
    ),
    (
        "config.py",
        "import publicsuffixlist",
        "publicsuffixlist only in mailer.send.readiness",
        "mailer.config -> publicsuffixlist",
    ),
]


@pytest.mark.parametrize(("module", "line", "contract", "named"), VIOLATIONS)
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, module: str, line: str, contract: str, named: str
) -> None:
    path = tree / "mailer" / module
    # Inside a function, where only a reader of every import statement finds it.
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _added() -> None:\n    {line}\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(name.startswith(contract) for name in broken(result.stdout)), result.stdout
    assert named in result.stdout


def test_the_owner_may_import_its_dependency(tree: Path) -> None:
    path = tree / "mailer" / "store" / "db.py"
    path.write_text(path.read_text(encoding="utf-8") + "\nimport alembic  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_new_module_must_sit_in_a_layer_and_is_confined(tree: Path) -> None:
    (tree / "mailer" / "mail_merge.py").write_text("import smtplib\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    layers = next(name for name in broken(result.stdout) if name.startswith("Layers:"))
    assert broken(result.stdout) == {layers, "smtplib only in mailer.send.transport"}
    assert "not listed as layers:\n\n- mailer.mail_merge\n" in result.stdout  # exhaustive
    assert "mailer.mail_merge -> smtplib" in result.stdout  # `mailer.*` covers it


def test_importing_the_send_run_loads_no_database_code() -> None:
    """The brief's promise, at run time (grimp does not see a package's __init__ run)."""
    code = (
        "import sys, mailer.send.run; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'sqlalchemy', 'alembic'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
