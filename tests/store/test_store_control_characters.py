"""Terminal control characters: refused in names and attributes at input (add, import, the
store's functions any sign-up goes through), escaped wherever stored text is printed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from mailer.cli import app
from mailer.errors import InvalidAddress, InvalidAttribute
from mailer.send.ports import DeliveryResult, DeliveryStatus, IssueFacts
from mailer.store.addresses import normalise_name
from mailer.store.csv_import import import_csv
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues
from mailer.store.models import Subscriber, SubscriberStatus
from mailer.store.subscribers import add_subscriber, get_subscriber, set_status

PWNED = "\x1b]0;PWNED\x07\x1b[2J"  # retitle the terminal, then clear it
C1 = "\x9b2J"  # the same clear, as one C1 character (CSI)


@pytest.fixture
def cli(
    config_env: Path, database_url: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> CliRunner:
    monkeypatch.setenv("MAILER_DATABASE_URL", database_url)
    return CliRunner()


@pytest.mark.parametrize("bad", [PWNED, C1, "\x07", "a\tb", "\x7f", "\x85"])
def test_control_characters_are_refused_in_names(bad: str) -> None:
    code = f"U+{ord(next(c for c in bad if c.isprintable() is False)):04X}"
    message = f"name: contains a control character ({code})"
    with pytest.raises(InvalidAddress, match=f"^{re.escape(message)}$"):
        normalise_name(f"Jane {bad} Doe")


def test_add_refuses_control_characters_in_names_and_attributes(
    cli: CliRunner, store: Store
) -> None:
    with pytest.raises(InvalidAttribute, match=r"^attribute 'org': contains a control char"):
        add_subscriber(store, "a@example.org", attributes={"org": f"ISEI{PWNED}"})
    with pytest.raises(
        InvalidAttribute, match=r"the name contains a control character \(U\+009B\)"
    ):
        add_subscriber(store, "a@example.org", attributes={f"o{C1}": "x"})
    result = cli.invoke(app, ["subscribers", "add", "a@example.org", "--name", f"A{PWNED}"])
    assert result.exit_code == 1
    assert result.stderr == "error: name: contains a control character (U+001B)\n"
    result = cli.invoke(app, ["subscribers", "add", "a@example.org", "--attr", f"org={C1}"])
    assert result.stderr == "error: attribute 'org': contains a control character (U+009B)\n"
    # Tabs and line breaks stay allowed in attribute values (multi-line notes).
    add_subscriber(store, "a@example.org", attributes={"notes": "two\nlines\tand a tab"})
    assert get_subscriber(store, "a@example.org").attributes["notes"] == "two\nlines\tand a tab"


def test_import_rejects_rows_with_control_characters(store: Store) -> None:
    text = (
        "email,name,org\n"
        f'ok@example.org,Ok,"multi\nline"\n'
        f"name@example.org,Evil{PWNED},x\n"
        f"attr@example.org,Fine,x{C1}\n"
    )
    result = import_csv(store, io.StringIO(text, newline=""))
    assert (result.added, result.rejected) == (1, 2)
    assert [(r.line, r.reason) for r in result.rejects] == [
        (4, "name: contains a control character (U+001B)"),
        (5, "org: contains a control character (U+009B)"),
    ]
    assert get_subscriber(store, "ok@example.org").attributes == {"org": "multi\nline"}


def test_stored_control_characters_are_escaped_by_list_and_show(
    cli: CliRunner, store: Store
) -> None:
    # Rows from before the input rule, or written by something else: as stored, raw.
    add_subscriber(store, "jane@example.org", name="Jane")
    set_status(store, "jane@example.org", SubscriberStatus.UNSUBSCRIBED, reason=f"r{PWNED}")
    with store.session() as session, session.begin():
        session.execute(
            update(Subscriber).values(name=f"Jane{PWNED}", attributes={f"k{C1}": f"v{PWNED}\nnext"})
        )
    listed = cli.invoke(app, ["subscribers", "list"])
    assert listed.stdout == "jane@example.org\tunsubscribed\tJane\\x1b]0;PWNED\\x07\\x1b[2J\n"
    shown = cli.invoke(app, ["subscribers", "show", "jane@example.org"]).stdout
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in listed.stdout + shown
    assert "name:       Jane\\x1b]0;PWNED\\x07\\x1b[2J\n" in shown
    assert "\nk\\x9b2J:    v\\x1b]0;PWNED\\x07\\x1b[2J\\nnext\n" in shown  # one line
    assert "(cli: r\\x1b]0;PWNED\\x07\\x1b[2J)" in shown  # the reason, in status and history


def test_report_escapes_a_servers_reply(cli: CliRunner, store: Store, config_env: Path) -> None:
    add_subscriber(store, "jane@example.org", name="Jane")
    issues = SqlIssues(store)
    facts = IssueFacts("007-test", 7, "Test issue", "2022-05-05", "0" * 64, "<p>web</p>")
    record, _ = issues.start(facts, force=False)
    ledger = issues.ledger(record.id)
    (row,) = ledger.next_rows(deferred_below=3, after_id=0, limit=10)
    reply = f"550 no such user{PWNED}"  # a remote server's words, stored as they came
    ledger.record(
        [DeliveryResult(row.delivery_id, row.subscriber_id, DeliveryStatus.FAILED, reply)]
    )
    ledger.close()
    result = cli.invoke(app, ["report", str(config_env / "issues" / "007-test")])
    assert result.exit_code == 0, result.output
    assert "550 no such user\\x1b]0;PWNED\\x07\\x1b[2J" in result.stdout
    assert "\x1b" not in result.stdout
