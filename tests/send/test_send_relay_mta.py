"""The production path: `mailer send` hands every copy to a real Postfix on 127.0.0.1, which
queues it and relays it onward (here to an smtp-sink behind ``pPORT.sink.test``).

tests/bounces/test_bounces_mta.py sends a handful through the same Postfix to collect its
DSNs; this one is about the relay itself: every copy of a whole issue arrives, once, with
its own VERP envelope, and the ledger records Postfix's acceptance (its queue id) for each.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from send_helpers import add_subscribers
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.cli import app
from mailer.store.db import Store
from mailer.store.models import Delivery, DeliveryStatus, Subscriber
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.mta import CA_FILE, Postfix, SinkMessage, SmtpSink, new_token

COPIES = 200


def wait_for_all(sink: SmtpSink, count: int, timeout: float = 150) -> list[SinkMessage]:
    deadline = time.monotonic() + timeout
    while True:
        got = sink.messages()
        if sum(len(m.rcpt_to) for m in got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.mark.timeout(240)  # a whole issue of 121 KB copies through a real queue
def test_an_issue_relayed_through_postfix_arrives_whole_and_the_ledger_is_complete(
    config_env: Path,
    store: Store,
    postfix: Postfix,
    smtp_sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", postfix.smtp_url)  # STARTTLS, verified
    monkeypatch.setenv("MAILER_SMTP_CA_FILE", str(CA_FILE))
    monkeypatch.setenv("MAILER_BOUNCE_ADDRESS", "mailer-bounces@localhost")
    token = new_token()
    readers = add_subscribers(store, COPIES, prefix=f"r{token}-")
    with store.session() as session, session.begin():  # at the sink's domain
        for row in session.scalars(select(Subscriber)):
            local = row.email.partition("@")[0]
            row.email = row.email_key = smtp_sink.address(local)
    readers = [smtp_sink.address(r.partition("@")[0]) for r in readers]

    result = CliRunner().invoke(app, ["send", str(SAMPLE_ISSUE), "--yes", "--connections", "4"])
    assert result.exit_code == 0, result.output
    assert f"{COPIES} sent in" in result.output and "via smtp://127.0.0.1:25" in result.output
    print(next(line for line in result.output.splitlines() if " sent in " in line))

    with store.session() as session:
        ledger = session.scalars(select(Delivery)).all()
    assert Counter(d.status for d in ledger) == {DeliveryStatus.SENT: COPIES}
    # Postfix's 250 is its acceptance into its queue, with the queue id: the ledger keeps it
    assert all(re.match(r"250 2\.0\.0 Ok: queued as \w+", d.last_reply) for d in ledger)
    assert len({d.last_reply for d in ledger}) == COPIES  # one queue file per copy

    arrived = wait_for_all(smtp_sink, COPIES)
    received = Counter(r for m in arrived for r in m.rcpt_to)
    assert received == Counter(readers), "every copy once, nobody missed"
    assert {m.message["Message-ID"] for m in arrived} == {d.message_id for d in ledger}
    for message in arrived:  # the envelope each copy carries: its own VERP bounce address
        assert re.fullmatch(r"mailer-bounces\+[a-z2-7]{40}@localhost", message.mail_from)
        assert (message.message["To"].addresses[0].addr_spec,) == message.rcpt_to
