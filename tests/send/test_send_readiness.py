"""The bulk-sender rules (mailer.send.readiness): findings, and `mailer send` refusing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.cli import app
from mailer.config import Config, load_config
from mailer.errors import SendError
from mailer.send.readiness import Finding, Level, check, findings, organisational_domain
from mailer.store.db import Store
from mailer.store.models import Issue
from tests.conftest import REPO, SAMPLE_ISSUE

REMOTE = "smtp://mail.example.net:587"


@pytest.fixture
def ready(config_env: Path) -> Config:
    """A config that meets every rule, for a relay on another machine."""
    return dataclasses.replace(
        load_config(),
        smtp_url=REMOTE,
        base_url="https://news.yuksalish.example.org",
        dkim_key_file="mail.key",
        dkim_selector="mail",
        dkim_domain="yuksalish.example.org",
    )


def levels(found: list[Finding]) -> list[tuple[Level, str]]:
    return [(f.level, f.setting) for f in found]


@pytest.mark.parametrize(
    ("domain", "organisational"),
    [
        ("news.example.org", "example.org"),
        ("Example.ORG.", "example.org"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),
        ("alice.github.io", "alice.github.io"),  # the list's private part counts too
        ("post.bücher.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
    ],
)
def test_organisational_domains_come_from_the_public_suffix_list(
    domain: str, organisational: str
) -> None:
    assert organisational_domain(domain) == organisational


def test_a_ready_config_has_no_findings(ready: Config) -> None:
    assert findings(ready) == []
    aligned = dataclasses.replace(ready, dkim_domain="mail.example.org")  # same org domain
    assert findings(aligned) == []


def test_each_rule(ready: Config) -> None:
    http = dataclasses.replace(ready, base_url="http://news.yuksalish.example.org")
    assert levels(findings(http)) == [(Level.ERROR, "base_url")]
    assert "RFC 8058" in str(findings(http)[0])
    unsigned = dataclasses.replace(ready, dkim_key_file="", dkim_selector="", dkim_domain="")
    assert levels(findings(unsigned)) == [(Level.WARNING, "dkim_key_file")]
    foreign = dataclasses.replace(ready, dkim_domain="mailer-service.example.net")
    assert levels(findings(foreign)) == [(Level.ERROR, "dkim_domain")]
    bounces = dataclasses.replace(ready, envelope_sender="bounces@esp.example.net")
    assert levels(findings(bounces)) == [(Level.WARNING, "envelope_sender")]
    everything = dataclasses.replace(
        foreign, base_url="http://x.example.org", envelope_sender="b@esp.example.net"
    )
    assert levels(findings(everything)) == [
        (Level.ERROR, "base_url"),
        (Level.ERROR, "dkim_domain"),
        (Level.WARNING, "envelope_sender"),
    ]


def test_alignment_follows_the_public_suffix_list(ready: Config) -> None:
    # "The last two labels" would call these aligned: both end in co.uk.
    british = dataclasses.replace(
        ready, from_address="news@example.co.uk", dkim_domain="other.co.uk", envelope_sender=""
    )
    assert levels(findings(british)) == [(Level.ERROR, "dkim_domain")]
    ok = dataclasses.replace(british, dkim_domain="mail.example.co.uk")
    assert findings(ok) == []


@pytest.mark.parametrize(
    "smtp_url", ["maildir:/tmp/outbox", "smtp://127.0.0.1:1025", "smtp://localhost:25"]
)
def test_a_send_that_stays_on_this_machine_is_not_judged(ready: Config, smtp_url: str) -> None:
    local = dataclasses.replace(ready, smtp_url=smtp_url, base_url="http://127.0.0.1:8000")
    assert findings(local) == [] and check(local) == ([], None)


def test_errors_refuse_unless_overridden(ready: Config) -> None:
    bad = dataclasses.replace(
        ready,
        base_url="http://x.example.org",
        dkim_domain="x.example.net",
        envelope_sender="b@x.example.net",
    )
    warnings, refusal = check(bad)
    assert levels(warnings) == [(Level.WARNING, "envelope_sender")]
    assert isinstance(refusal, SendError)
    assert re.fullmatch(
        r'not sent, .*: base_url: .*; dkim_domain: .*"warn" to send anyway\)', str(refusal)
    )
    warnings, refusal = check(dataclasses.replace(bad, bulk_sender_rules="warn"))
    assert refusal is None
    assert levels(warnings) == [
        (Level.ERROR, "base_url"),
        (Level.ERROR, "dkim_domain"),
        (Level.WARNING, "envelope_sender"),
    ]


def test_mailer_send_refuses_before_anything_and_the_override_lets_it_try(
    config_env: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_subscribers(store, 3)
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", "smtp://192.0.2.1:25")  # TEST-NET-1: not here
    monkeypatch.setenv("MAILER_SMTP_TIMEOUT", "0.5")
    result = CliRunner().invoke(app, ["send", str(SAMPLE_ISSUE), "--yes"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[-1].startswith(
        "error: not sent, Gmail and Yahoo would refuse or junk it: base_url: "
    )
    assert 'bulk_sender_rules = "warn"' in lines[-1] and "Traceback" not in result.output
    assert "warning: dkim_key_file: DKIM is off" in result.output
    with store.session() as session:
        assert session.scalars(select(Issue)).all() == []  # nothing recorded, nobody asked

    dry = CliRunner().invoke(app, ["send", str(SAMPLE_ISSUE), "--dry-run"])
    assert dry.exit_code == 0 and "refused at send: base_url: " in dry.output

    monkeypatch.setenv("MAILER_BULK_SENDER_RULES", "warn")
    result = CliRunner().invoke(app, ["send", str(SAMPLE_ISSUE), "--yes"])
    assert "warning: base_url: http://127.0.0.1:8000 is not https" in result.output
    # Past the rules: it tried the relay (which is not there) and stopped with one line.
    assert result.exit_code == 1 and "error: cannot connect to 192.0.2.1:25" in result.output
