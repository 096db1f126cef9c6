"""Fixtures for the `mailer check` tests: a working folder with copies of the sample issue
and the layouts, so findings name them as a repository's CI would (relative paths)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mailer.cli import app
from tests.conftest import REPO, SAMPLE_ISSUE

ISSUE = "issues/025-may-2022"  # as the findings name it, from the working folder


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working folder: mailer.toml, layouts/ and issues/025-may-2022/."""
    for key in list(os.environ):
        if key.startswith("MAILER_") and not key.startswith("MAILER_TEST_"):
            monkeypatch.delenv(key)
    shutil.copy(REPO / "mailer.toml", tmp_path / "mailer.toml")
    shutil.copytree(REPO / "layouts", tmp_path / "layouts")
    shutil.copytree(SAMPLE_ISSUE, tmp_path / ISSUE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def check(workdir: Path) -> Callable[..., Result]:
    """Run `mailer check` on the copy (SpamAssassin off unless the test turns it on)."""

    def run(*args: str, spam: bool = False) -> Result:
        options = [] if spam else ["--no-spamassassin"]
        return CliRunner().invoke(app, ["check", ISSUE, *options, *args])

    return run


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in ``path`` (which must hold it) with ``new``."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` holding ``text`` (computed, not assumed, by the tests)."""
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
