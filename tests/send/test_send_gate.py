"""`mailer send` runs the checks of `mailer check` first: an error refuses the send (one line
pointing at `mailer check`), --skip-checks overrides it, warnings never block."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from send_smtp_server import SmtpServer
from sqlalchemy import select
from typer.testing import CliRunner, Result

from mailer.cli import app
from mailer.store.db import Store
from mailer.store.models import Delivery, Issue
from tests.conftest import REPO, SAMPLE_ISSUE


@pytest.fixture
def issue(
    config_env: Path, store: Store, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of the sample issue, three subscribers and an SMTP server to send to."""
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", smtp.url())
    add_subscribers(store, 3)
    target = config_env / "issues" / SAMPLE_ISSUE.name
    shutil.copytree(SAMPLE_ISSUE, target)
    return target


def mailer(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _placeholder(issue: Path) -> None:
    path = issue / "study-tour-usa.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("For example,", "TODO For example,", 1), encoding="utf-8")


def test_an_error_refuses_the_send_before_anything_is_recorded(
    issue: Path, store: Store, smtp: SmtpServer
) -> None:
    _placeholder(issue)
    refused = mailer("send", str(issue), "--yes")
    assert refused.exit_code == 1
    shown = os.path.relpath(issue)
    assert (
        f"error: not sent: `mailer check {issue}` finds 1 error "
        f"({shown}/study-tour-usa.md:10: placeholder TODO left in the text): run it for "
        "details, fix them, or pass --skip-checks to send anyway\n"
    ) in refused.output
    assert "Traceback" not in refused.output
    assert smtp.recipients == []
    with store.session() as session:
        assert session.scalars(select(Issue)).all() == []
        assert session.scalars(select(Delivery)).all() == []

    dry = mailer("send", str(issue), "--dry-run")  # the dry run says so too, and goes on
    assert dry.exit_code == 0, dry.output
    assert f"refused at send: `mailer check {issue}` finds 1 error" in dry.output

    forced = mailer("send", str(issue), "--yes", "--skip-checks")
    assert forced.exit_code == 0, forced.output
    assert sorted(smtp.recipients) == [f"reader{i}@example.org" for i in range(3)]


def test_warnings_do_not_block_and_test_copies_are_not_gated(issue: Path, smtp: SmtpServer) -> None:
    manifest = issue / "issue.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(text.replace("May 2022", "May 2022, " + "and more " * 8), "utf-8")
    sent = mailer("send", str(issue), "--yes")  # a subject over 78 characters: a warning
    assert sent.exit_code == 0, sent.output
    assert len(smtp.recipients) == 3

    _placeholder(issue)
    copy = mailer("send", str(issue), "--to", "editor@example.org")  # a draft's test copy
    assert copy.exit_code == 0, copy.output
    assert smtp.recipients[-1] == "editor@example.org"
