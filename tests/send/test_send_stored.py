"""The composed issue is stored with the issue when its send starts, and read back whole."""

from __future__ import annotations

import dataclasses
from email import message_from_bytes
from email.message import Message

from send_helpers import add_subscribers, make_issue, service, with_server
from send_smtp_server import SmtpServer

from mailer.compose import compose_issue
from mailer.compose.model import ComposedIssue, Newsletter
from mailer.config import Config
from mailer.send.run import SendOptions
from mailer.send.stored import composed_of, facts_of, template_text
from mailer.store.composed import stored_issue
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues
from tests.conftest import REPO, SAMPLE_ISSUE


def _same(a: ComposedIssue, b: ComposedIssue) -> None:
    assert a.meta == b.meta
    assert a.html == b.html
    assert a.text == b.text
    assert a.web_html == b.web_html
    assert a.content_hash == b.content_hash


def test_the_real_issue_is_stored_at_send_start_and_read_back_whole(
    store: Store, config: Config
) -> None:
    newsletter = Newsletter.from_config(dataclasses.replace(config, layouts_dir=REPO / "layouts"))
    issue = compose_issue(SAMPLE_ISSUE, newsletter)
    assert template_text(issue.html).count("%%MAILER_") == len(issue.html.fields)
    assert stored_issue(store, issue.meta.slug) is None  # nothing before the send starts
    record, _ = SqlIssues(store).start(facts_of(issue), force=False)
    stored = stored_issue(store, issue.meta.slug)
    assert stored is not None and stored.id == record.id
    assert stored.facts == facts_of(issue)
    _same(composed_of(stored), issue)


def test_a_forced_new_version_replaces_the_stored_one(store: Store, config: Config) -> None:
    issues = SqlIssues(store)
    first, second = make_issue(), make_issue(extra="<p>a correction</p>")
    issues.start(facts_of(first), force=False)
    issues.start(facts_of(second), force=True)
    stored = issues.stored(first.meta.slug)
    assert stored is not None
    _same(composed_of(stored), second)


def _body(message: Message) -> str:
    parts = [p for p in message.walk() if p.get_content_type() == "text/plain"]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_the_send_delivers_the_stored_version_not_the_folders(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    """A worker has no folder: what goes is what the store kept (here the folder's copy
    differs only in a way the content hash does not see, to show which one was used)."""
    add_subscribers(store, 3)
    issue = make_issue()
    SqlIssues(store).start(facts_of(issue), force=False)
    local = dataclasses.replace(
        issue,
        text=dataclasses.replace(issue.text, parts=("NOT THE STORED TEXT", *issue.text.parts[1:])),
    )
    sending = service(store, with_server(config, smtp))
    summary = sending.send(local, SendOptions(connections=1))
    assert summary.progress.sent == 3
    bodies = [_body(message_from_bytes(m)) for _, m in smtp.accepted]
    assert all("NOT THE STORED TEXT" not in b and "Dear Reader" in b for b in bodies)
