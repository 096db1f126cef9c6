"""`mailer bounces` over a Maildir on a real database: proof, rules, idempotence."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.bounces.job import run_once
from mailer.bounces.ports import Kind
from mailer.config import Config
from mailer.send.ports import DeliveryResult, DeliveryStatus
from mailer.store.csv_import import import_csv
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues
from mailer.store.models import BounceReport, Delivery, SubscriberStatus
from mailer.store.report import issue_report
from mailer.store.subscribers import forget, set_status
from tests.bounces.helpers import (
    Box,
    arf,
    auto_reply,
    bounce_config,
    delivery_bounces,
    dsn,
    history,
    qmail_bounce,
    send_issue,
    status_of,
    subscribe,
)

A, B, C = "ann@example.org", "bob@example.org", "cid@example.org"


@pytest.fixture
def cfg(config: Config, tmp_path: Path) -> Config:
    return bounce_config(config, tmp_path / "outbox")


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path / "bounces")


def test_each_copy_goes_out_from_its_own_verp_address(store: Store, cfg: Config) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    senders = {c.envelope_from for c in copies.values()}
    assert len(senders) == 2
    for sender in senders:
        local, _, domain = sender.partition("@")
        assert domain == "news.example.org" and local.startswith("bounces+")
        assert len(local) <= 64 and local == local.lower()
        assert A.split("@")[0] not in local and B.split("@")[0] not in local


def test_a_hard_bounce_marks_the_subscriber_and_the_next_issue_skips_them(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    box.put(dsn(copies[A]))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.HARD] == 1 and summary.status_changes == {"bounced": 1}
    assert status_of(store, A) == "bounced" and status_of(store, B) == "active"
    assert delivery_bounces(store, A) == [("hard", "5.1.1")]
    assert history(store, A)[-1][:2] == ("active", "bounced")
    assert "5.1.1" in history(store, A)[-1][2]
    assert box.names() == [] and len(box.names("processed")) == 1

    assert set(send_issue(store, cfg, 2)) == {B}


def test_running_again_over_the_same_reports_changes_nothing(
    store: Store, cfg: Config, box: Box, tmp_path: Path
) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    raw = dsn(copies[A], status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full")
    box.put(raw)
    first = box.run(store, cfg)
    assert first.counts[Kind.SOFT] == 1
    events = history(store, A)
    box.put(raw.replace(b"\r\n", b"\n"))  # the same report again, as another copy of it
    second = box.run(store, cfg)
    assert second.already == 1 and second.counts[Kind.SOFT] == 0
    assert history(store, A) == events
    assert len(box.names("processed")) == 2
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(BounceReport)) == 1


def test_a_report_that_proves_nothing_is_unrecognised_and_changes_nobody(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    forged = dsn(copies[A], to="bounces@news.example.org", returned="none")  # address only
    box.put(forged)
    tampered = dsn(copies[B], returned="none")  # a VERP token with one letter changed
    token = copies[B].envelope_from.split("+")[1][:40]
    flipped = ("b" if token[5] != "b" else "c").encode()
    box.put(tampered.replace(token.encode(), token[:5].encode() + flipped + token[6:].encode()))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.UNRECOGNISED] == 2 and summary.counts[Kind.HARD] == 0
    assert status_of(store, A) == status_of(store, B) == "active"
    assert len(box.names("unrecognised")) == 2 and box.names("processed") == []


def test_a_report_about_a_stranger_is_unrecognised(store: Store, cfg: Config, box: Box) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    stranger = dsn(copies[A], returned="none", to="bounces@news.example.org")
    box.put(stranger.replace(A.encode(), b"someone@else.example"))
    assert box.run(store, cfg).counts[Kind.UNRECOGNISED] == 1
    assert status_of(store, A) == "active"


@pytest.mark.parametrize("returned", ["headers", "message"])
def test_our_headers_in_the_returned_message_prove_it_without_verp(
    store: Store, cfg: Config, box: Box, returned: str
) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    box.put(dsn(copies[A], to="bounces@news.example.org", returned=returned))
    assert box.run(store, cfg).counts[Kind.HARD] == 1
    assert status_of(store, A) == "bounced"


def test_only_our_message_id_proves_it(store: Store, cfg: Config, box: Box) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    report = dsn(copies[A], to="bounces@news.example.org", returned="none")
    message_id = str(copies[A].message["Message-ID"]).encode()
    box.put(
        report.replace(b"Remote-MTA:", b"X-Original-Message-ID: " + message_id + b"\nRemote-MTA:")
    )
    assert box.run(store, cfg).counts[Kind.HARD] == 1


def test_a_complaint_with_the_recipient_redacted(store: Store, cfg: Config, box: Box) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    box.put(arf(copies[A]))  # to the plain bounce address, Original-Rcpt-To redacted
    summary = box.run(store, cfg)
    assert summary.counts[Kind.COMPLAINT] == 1
    assert status_of(store, A) == "complained" and status_of(store, B) == "active"
    assert delivery_bounces(store, A) == [("complaint", "abuse")]
    report = issue_report(store, "001-test")
    assert report.rates.complaints == 1 and report.rates.complaint_rate == 0.5
    assert any("0.3 %" in w for w in report.rates.warnings())
    assert set(send_issue(store, cfg, 2)) == {B}


def test_auto_replies_delay_notices_and_other_feedback_are_ignored(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    box.put(auto_reply(copies[A]))
    box.put(dsn(copies[A], action="delayed", status="4.4.1", diagnostic="smtp; 451 try later"))
    box.put(arf(copies[A], feedback_type="not-spam"))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.IGNORED] == 3 and summary.total == 3
    assert status_of(store, A) == "active" and delivery_bounces(store, A) == [("", "")]
    assert len(box.names("processed")) == 3


def test_a_bounce_never_overwrites_an_unsubscribe(store: Store, cfg: Config, box: Box) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    set_status(store, A, SubscriberStatus.UNSUBSCRIBED, source="one-click")
    box.put(dsn(copies[A]))
    box.put(arf(copies[A]))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.HARD] == 1 and summary.counts[Kind.COMPLAINT] == 1
    assert status_of(store, A) == "unsubscribed"
    notes = [h for h in history(store, A) if h[0] == h[1] == "unsubscribed"]
    assert len(notes) == 2 and all("kept unsubscribed" in n[2] for n in notes)


def test_a_policy_refusal_never_counts_against_the_subscriber(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    dmarc = "smtp; 550 5.7.26 Unauthenticated email from news.example.org is not accepted"
    box.put(dsn(copies[A], status="5.7.26", diagnostic=dmarc))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.POLICY] == 1 and summary.policy[0].startswith("5.7.26")
    assert status_of(store, A) == "active" and history(store, A) == []
    assert issue_report(store, "001-test").rates.policy == 1


def test_three_consecutive_soft_bounces_bounce_and_a_clean_issue_resets(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A, B)
    full = {"status": "5.2.2", "diagnostic": "smtp; 552 5.2.2 Mailbox full"}
    # B: soft, soft, clean, soft, soft -> still active; A: soft x3 -> bounced on the third.
    for number in (1, 2, 3):
        copies = send_issue(store, cfg, number)
        box.put(dsn(copies[A], **full))
        if number != 3:
            box.put(dsn(copies[B], **full))
        box.run(store, cfg)
        assert status_of(store, A) == ("bounced" if number == 3 else "active")
    for number in (4, 5):
        copies = send_issue(store, cfg, number)
        assert set(copies) == {B}
        box.put(dsn(copies[B], **full))
        box.run(store, cfg)
    assert status_of(store, B) == "active"
    assert [b for b, _ in delivery_bounces(store, B)] == ["soft", "soft", "", "soft", "soft"]
    assert "3 in a row" in history(store, A)[-1][2]


def test_a_hard_bounce_in_the_smtp_dialogue_is_not_counted_twice(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    issues = SqlIssues(store)
    record = issues.find("001-test")
    assert record is not None
    ledger = issues.ledger(record.id)
    (row,) = ledger.next_rows(deferred_below=99, after_id=0, limit=5) or [None]
    assert row is None  # sent already; mark it as a dialogue bounce as the run would have
    with store.session() as session:
        delivery = session.scalars(select(Delivery)).one()
    ledger.record(
        [
            DeliveryResult(
                delivery.id,
                delivery.subscriber_id,
                DeliveryStatus.FAILED,
                reply="550 5.1.1 <ann@example.org>: user unknown",
                bounced=True,
            )
        ]
    )
    ledger.close()
    box.put(dsn(copies[A]))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.HARD] == 1 and summary.repeats == 1
    assert summary.status_changes == {}
    assert issue_report(store, "001-test").rates.hard == 1
    assert [h[1] for h in history(store, A)].count("bounced") == 1


def test_a_text_bounce_with_the_original_inline(store: Store, cfg: Config, box: Box) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    box.put(qmail_bounce(copies[A]))
    box.put(qmail_bounce(copies[B], "This message is larger than the size limit (#5.3.4)"))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.HARD] == 1 and summary.counts[Kind.SOFT] == 1
    assert status_of(store, A) == "bounced" and status_of(store, B) == "active"


def test_several_recipient_blocks_the_mildest_decides(store: Store, cfg: Config, box: Box) -> None:
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    blocks = [
        ("ann@example.org", "failed", "5.1.1", "smtp; 550 5.1.1 no such user"),
        ("ann.forward@example.net", "failed", "5.2.2", "smtp; 552 5.2.2 mailbox full"),
        ("ann.other@example.net", "delivered", "2.0.0", ""),
    ]
    box.put(dsn(copies[A], recipients=blocks))
    assert box.run(store, cfg).counts[Kind.SOFT] == 1
    assert status_of(store, A) == "active"


def test_a_malformed_report_goes_to_unrecognised(store: Store, cfg: Config, box: Box) -> None:
    box.put(b"\x00\xff garbage without headers \r\n\r\n\x80")
    box.put(
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: message/delivery-status\r\n\r\n\xff\xfe: ::\r\n--x"
    )
    summary = box.run(store, cfg)
    assert summary.counts[Kind.UNRECOGNISED] == 2
    assert len(box.names("unrecognised")) == 2


def test_reports_for_test_copies_and_erased_subscribers_change_nobody(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    forget(store, B)
    box.put(dsn(copies[B]))
    summary = box.run(store, cfg)
    assert summary.counts[Kind.IGNORED] == 1 and summary.status_changes == {}
    assert status_of(store, A) == "active"


def test_two_claims_naming_different_deliveries_are_unrecognised(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, A, B)
    copies = send_issue(store, cfg, 1)
    mixed = dsn(copies[A], returned="headers", to=copies[B].envelope_from)
    box.put(mixed)
    assert box.run(store, cfg).counts[Kind.UNRECOGNISED] == 1
    assert status_of(store, A) == status_of(store, B) == "active"


def test_a_complaint_beats_a_bounce_and_imports_never_reactivate_it(
    store: Store, cfg: Config, box: Box
) -> None:
    subscribe(store, C)
    copies = send_issue(store, cfg, 1)
    box.put(dsn(copies[C]))
    assert box.run(store, cfg).status_changes == {"bounced": 1}
    box.put(arf(copies[C]))
    assert box.run(store, cfg).status_changes == {"complained": 1}

    import_csv(store, io.StringIO(f"email\n{C}\n", newline=""), resubscribe=True)
    assert status_of(store, C) == "complained"


def test_run_once_reads_the_configured_mailbox(store: Store, cfg: Config, box: Box) -> None:
    assert run_once(cfg, store).total == 0  # bounce_mailbox not set: nothing to do
    subscribe(store, A)
    copies = send_issue(store, cfg, 1)
    box.put(dsn(copies[A]))
    configured = dataclasses.replace(cfg, bounce_mailbox=str(box.path))
    assert run_once(configured, store).counts[Kind.HARD] == 1
    assert run_once(configured, store).total == 0
    assert status_of(store, A) == "bounced"
