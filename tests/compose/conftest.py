"""Fixtures for the compose tests: the repository's config, the sample and a small issue."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mailer.compose import ComposedIssue, compose_issue
from mailer.compose.model import Newsletter
from mailer.config import Config, load_config
from tests.conftest import REPO, SAMPLE_ISSUE

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL_ISSUE = FIXTURES / "007-spring-2022"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MAILER_")}


@pytest.fixture(scope="session")
def config() -> Config:
    """The repository's mailer.toml (the sample newsletter), ignoring MAILER_* variables."""
    saved = _clean_env()
    for key in saved:
        del os.environ[key]
    try:
        return load_config(REPO / "mailer.toml")
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="session")
def newsletter(config: Config) -> Newsletter:
    """What compose reads of the repository's config."""
    return Newsletter.from_config(config)


@pytest.fixture(scope="session")
def sample(newsletter: Newsletter) -> ComposedIssue:
    """The sample issue #25, composed once for the session."""
    return compose_issue(SAMPLE_ISSUE, newsletter)


@pytest.fixture
def issue(tmp_path: Path) -> Path:
    """A writable copy of the small fixture issue, for tests that break it."""
    target = tmp_path / "issues" / SMALL_ISSUE.name
    shutil.copytree(SMALL_ISSUE, target)
    return target


@pytest.fixture
def layouts(tmp_path: Path, newsletter: Newsletter) -> Path:
    """A writable copy of the layouts folder."""
    target = tmp_path / "layouts"
    shutil.copytree(newsletter.layouts_dir, target)
    return target
