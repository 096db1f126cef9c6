"""The send run against real SMTP servers (aiosmtpd) and a real database, with faults."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import mailbox
import random
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from send_helpers import add_subscribers, make_issue, service, with_server
from send_smtp_server import Certs, Faults, SmtpServer
from sqlalchemy import select

from mailer.config import Config
from mailer.errors import ContentChanged, SendError, TransportError
from mailer.send.ports import DeliveryResult
from mailer.send.run import Progress, SendOptions
from mailer.send.service import Summary
from mailer.send.transport import (
    SmtpConnection,
    SmtpTarget,
    SmtpTransport,
    smtp_target,
    transport_from_config,
)
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues, SqlLedger
from mailer.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueState,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from mailer.store.status import change_status
from mailer.store.unsubscribe import unsubscribe_by_link

Factory = Callable[..., SmtpServer]


def run(
    store: Store,
    config: Config,
    issue: Any = None,
    on_progress: Callable[[Progress], None] | None = None,
    **options: Any,
) -> Summary:
    options.setdefault("connections", 2)
    options.setdefault("backoff", 0.02)
    return service(store, config).send(
        issue or make_issue(), SendOptions(**options), on_progress=on_progress
    )


def ledger(store: Store) -> dict[str, Delivery]:
    with store.session() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
    return {email: delivery for email, delivery in rows}


def interrupt_after(sent: int) -> Callable[[Progress], None]:
    def callback(progress: Progress) -> None:
        if progress.sent >= sent:
            raise KeyboardInterrupt

    return callback


def test_every_active_subscriber_gets_exactly_one_copy(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 40)
    add_subscribers(store, 3, prefix="gone", status=SubscriberStatus.UNSUBSCRIBED)
    summary = run(store, with_server(config, smtp), connections=3)
    assert sorted(smtp.recipients) == sorted(emails)
    assert summary.snapshotted == 40 and summary.progress.sent == 40 and summary.finished
    assert summary.counts[DeliveryStatus.SENT] == 40
    rows = ledger(store)
    assert all(rows[e].status is DeliveryStatus.SENT and rows[e].attempts == 1 for e in emails)
    stamps = [rows[e].sent_at for e in emails]
    assert all(s is not None and s.utcoffset() == dt.timedelta(0) for s in stamps)
    assert all(abs(dt.datetime.now(dt.UTC) - s) < dt.timedelta(minutes=5) for s in stamps if s)
    assert len({rows[e].message_id for e in emails}) == 40
    # Each copy went to its own address, personalised for it.
    for rcpt, data in smtp.accepted:
        assert f"To: Reader {rcpt[6:].split('@')[0]} <{rcpt}>".encode() in data
    with store.session() as session:
        issue = session.scalars(select(Issue)).one()
        assert issue.state is IssueState.SENT and issue.sent_at is not None
    again = run(store, with_server(config, smtp))
    assert again.progress.sent == 0 and again.already_sent == 40 and again.snapshotted == 0
    assert len(smtp.recipients) == 40


def test_an_interrupted_send_resumes_with_the_rest(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 60)
    cfg = with_server(config, smtp)
    with pytest.raises(KeyboardInterrupt):
        run(store, cfg, on_progress=interrupt_after(5), rate=100.0)
    first = len(smtp.recipients)
    assert 5 <= first < 60
    plan = service(store, cfg).plan(make_issue(), SendOptions())
    assert plan.already_sent == first and plan.to_send == 60 - first
    summary = run(store, cfg)
    assert summary.already_sent == first and summary.progress.sent == 60 - first
    assert Counter(smtp.recipients) == Counter(emails)  # nobody twice, nobody missing


@pytest.mark.parametrize("pipelining", [True, False])
def test_421_and_dropped_connections_reconnect(
    store: Store, config: Config, smtp_factory: Factory, pipelining: bool
) -> None:
    emails = add_subscribers(store, 23)
    server = smtp_factory(faults=Faults(close_every=5, drop_at={3, 11}), pipelining=pipelining)
    summary = run(store, with_server(config, server), connections=1)
    assert Counter(server.recipients) == Counter(emails)
    assert summary.progress.sent == 23 and summary.finished
    assert server.handler.sessions >= 6  # 421 every 5 messages, plus two drops


def test_a_slow_server_with_several_connections(
    store: Store, config: Config, smtp_factory: Factory
) -> None:
    emails = add_subscribers(store, 12)
    server = smtp_factory(faults=Faults(delay=0.05))
    run(store, with_server(config, server), connections=4)
    assert Counter(server.recipients) == Counter(emails)


def test_per_connection_message_cap(store: Store, config: Config, smtp: SmtpServer) -> None:
    emails = add_subscribers(store, 10)
    run(store, with_server(config, smtp, max_messages_per_connection=3), connections=1)
    assert Counter(smtp.recipients) == Counter(emails)
    assert smtp.handler.sessions == 4  # 3 + 3 + 3 + 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_451_is_retried_with_backoff_then_left_deferred(
    store: Store, config: Config, smtp_factory: Factory, pipelining: bool
) -> None:
    add_subscribers(store, 6)
    faults = Faults(defer={"reader1@example.org": 2, "reader2@example.org": -1})
    server = smtp_factory(faults=faults, pipelining=pipelining)
    cfg = with_server(config, server)
    summary = run(store, cfg, attempts=4)
    rows = ledger(store)
    assert rows["reader1@example.org"].status is DeliveryStatus.SENT
    assert rows["reader1@example.org"].attempts == 3
    assert rows["reader2@example.org"].status is DeliveryStatus.DEFERRED
    assert rows["reader2@example.org"].attempts == 4
    assert rows["reader2@example.org"].last_reply.startswith("451 4.3.0")
    assert summary.progress.deferred == 1 and summary.progress.sent == 5
    assert not summary.finished
    # A plain resume leaves deferred rows alone; --retry sends them.
    assert run(store, cfg).progress.sent == 0
    del faults.defer["reader2@example.org"]
    retried = run(store, cfg, retry=True)
    assert retried.progress.sent == 1 and retried.finished
    assert Counter(server.recipients)["reader2@example.org"] == 1
    assert len(server.recipients) == 6


class _FailingLedger(SqlLedger):
    """The real ledger, whose writes start failing (e.g. the disk filled up) after a while."""

    def __init__(self, store: Store, issue_id: int, fail_after: int) -> None:
        super().__init__(store, issue_id)
        self.writes = 0
        self.fail_after = fail_after

    def record(self, results: Sequence[DeliveryResult], check: Sequence[int] = ()) -> set[int]:
        self.writes += 1
        if self.writes > self.fail_after:
            raise OSError(28, "No space left on device")
        return super().record(results, check)


class _FailingIssues(SqlIssues):
    def ledger(self, issue_id: int) -> SqlLedger:
        return _FailingLedger(self.store, issue_id, fail_after=5)


def test_a_failing_ledger_write_stops_the_run_within_the_duplicate_bound(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 60)
    cfg = with_server(config, smtp)
    with pytest.raises(SendError, match="No space left on device"):
        service(store, cfg, _FailingIssues(store)).send(make_issue(), SendOptions(connections=3))
    recorded = sum(d.status is DeliveryStatus.SENT for d in ledger(store).values())
    assert len(smtp.recipients) - recorded <= 3  # at most one unrecorded per connection
    run(store, cfg, connections=3)
    received = Counter(smtp.recipients)
    assert set(received) == set(emails)
    assert sum(n - 1 for n in received.values()) <= 3


def test_a_send_stopped_during_a_backoff_resumes_the_deferred_row(
    store: Store, config: Config, smtp_factory: Factory
) -> None:
    emails = add_subscribers(store, 4)
    faults = Faults(defer={"reader1@example.org": -1})
    server = smtp_factory(faults=faults)
    cfg = with_server(config, server)

    def stop_when_deferred(progress: Progress) -> None:
        if progress.deferred and progress.sent == 3:
            raise KeyboardInterrupt  # as a kill would, while the row waits for its retry

    with pytest.raises(KeyboardInterrupt):
        run(store, cfg, None, stop_when_deferred, backoff=30.0, attempts=4)
    row = ledger(store)["reader1@example.org"]
    assert (row.status, row.attempts) == (DeliveryStatus.DEFERRED, 1)
    plan = service(store, cfg).plan(make_issue(), SendOptions(attempts=4))
    assert (plan.to_send, plan.deferred_left) == (1, 0)
    del faults.defer["reader1@example.org"]
    summary = run(store, cfg, attempts=4)  # a plain re-run, no --retry needed
    assert summary.progress.sent == 1 and summary.finished
    assert Counter(server.recipients) == Counter(emails)
    assert ledger(store)["reader1@example.org"].attempts == 2


@pytest.mark.parametrize("pipelining", [True, False])
def test_550_no_such_user_fails_once_and_bounces_the_subscriber(
    store: Store, config: Config, smtp_factory: Factory, pipelining: bool
) -> None:
    add_subscribers(store, 5)
    server = smtp_factory(faults=Faults(reject={"reader3@example.org"}), pipelining=pipelining)
    cfg = with_server(config, server)
    summary = run(store, cfg)
    assert summary.progress.failed == 1 and summary.progress.bounced == 1
    assert summary.finished  # a permanent failure is final
    row = ledger(store)["reader3@example.org"]
    assert row.status is DeliveryStatus.FAILED and row.last_reply.startswith("550 5.1.1")
    with store.session() as session:
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.email == "reader3@example.org")
        ).one()
        assert subscriber.status is SubscriberStatus.BOUNCED
        assert subscriber.status_source == "bounce"
        event = session.scalars(select(SubscriberEvent)).one()
        assert (event.new_status, event.source) == ("bounced", "bounce")
    run(store, cfg, retry=True)
    rcpts = [a for a, _ in server.handler.rcpt_replies if a == "reader3@example.org"]
    assert len(rcpts) == 1  # never retried


def test_unsubscribe_during_the_send_skips_the_subscriber(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 30)
    leaving = emails[-5:]
    done = False

    def unsubscribe_some(progress: Progress) -> None:
        nonlocal done
        if progress.sent >= 3 and not done:
            done = True
            with store.session() as session, session.begin():
                for subscriber in session.scalars(
                    select(Subscriber).where(Subscriber.email.in_(leaving))
                ):
                    change_status(
                        session, subscriber, SubscriberStatus.UNSUBSCRIBED, source="one-click"
                    )

    summary = run(
        store, with_server(config, smtp), None, unsubscribe_some, rate=20.0, connections=1
    )
    assert done
    assert sorted(smtp.recipients) == sorted(emails[:-5])
    assert summary.progress.skipped == 5 and summary.finished
    rows = ledger(store)
    assert all(rows[e].status is DeliveryStatus.SKIPPED for e in leaving)
    with store.session() as session:
        left = session.scalars(select(Subscriber).where(Subscriber.email.in_(leaving))).all()
        assert {s.status for s in left} == {SubscriberStatus.UNSUBSCRIBED}  # not overwritten


@pytest.mark.parametrize("pipelining", [True, False])
def test_an_unsubscribe_answered_while_the_message_travels_stops_that_message(
    store: Store, config: Config, smtp_factory: Factory, pipelining: bool, rng: random.Random
) -> None:
    # The unsubscribe is committed (as the web app's 200 is) while the server takes the
    # RCPT: after the batch read the row's status, before the message's final dot.
    emails = add_subscribers(store, 40)
    leaving = set(rng.sample(emails, 12))
    with store.session() as session:
        uids = {e: u for e, u in session.execute(select(Subscriber.email, Subscriber.uid))}

    def unsubscribe(address: str) -> None:
        if address in leaving:
            assert unsubscribe_by_link(store, uids[address], 25, source="one-click")

    server = smtp_factory(faults=Faults(on_rcpt=unsubscribe), pipelining=pipelining)
    summary = run(store, with_server(config, server), connections=3)
    assert Counter(server.recipients) == Counter(e for e in emails if e not in leaving)
    assert summary.progress.skipped == 12 and summary.progress.sent == 28 and summary.finished
    rows = ledger(store)
    assert {e for e in emails if rows[e].status is DeliveryStatus.SKIPPED} == leaving
    assert all(rows[e].attempts == 0 for e in leaving)  # abandoned before the final dot
    with store.session() as session:
        left = session.scalars(select(Subscriber).where(Subscriber.email.in_(leaving))).all()
        assert {s.status for s in left} == {SubscriberStatus.UNSUBSCRIBED}


@pytest.mark.parametrize("connections", [1, 4])
def test_a_low_rate_ends_the_run_with_its_last_message(
    store: Store, config: Config, smtp: SmtpServer, connections: int
) -> None:
    # 2 recipients at 30/m: the second goes at 2 s, and the run ends then. It used to wait
    # for slots it would not use: 4 s with one connection, 10 s with four.
    emails = add_subscribers(store, 2)
    summary = run(store, with_server(config, smtp), rate=0.5, connections=connections)
    assert sorted(smtp.recipients) == sorted(emails) and summary.finished
    assert 2.0 <= summary.progress.elapsed < 3.5


def test_changed_content_is_refused_unless_forced(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 30)
    cfg = with_server(config, smtp)
    with pytest.raises(KeyboardInterrupt):
        run(store, cfg, make_issue(), interrupt_after(3), rate=50.0)
    first = len(smtp.recipients)
    changed = make_issue(extra="<p>A late correction.</p>")
    with pytest.raises(ContentChanged, match="--force"):
        service(store, cfg).plan(changed, SendOptions())
    with pytest.raises(ContentChanged, match="changed since its send started"):
        run(store, cfg, changed)
    assert len(smtp.recipients) == first
    summary = run(store, cfg, changed, force=True)
    assert summary.progress.sent == 30 - first
    assert Counter(smtp.recipients) == Counter(emails)
    late = [data for _, data in smtp.accepted[first:]]
    assert all(b"A late correction." in data for data in late)
    with store.session() as session:
        assert session.scalars(select(Issue)).one().content_hash == changed.content_hash


def test_rate_limit_spaces_the_messages(store: Store, config: Config, smtp: SmtpServer) -> None:
    add_subscribers(store, 20)
    summary = run(store, with_server(config, smtp), rate=40.0, connections=2)
    assert summary.progress.sent == 20
    assert summary.progress.elapsed >= 19 / 40  # never faster than the rate (benchmark: 5%)


# --- TLS, AUTH and transport failures ------------------------------------------------------

PASSWORD = "s3cret-Passw0rd-never-shown"


def tls_config(config: Config, server: SmtpServer, certs: Certs | None, user: str = "") -> Config:
    return dataclasses.replace(
        config, smtp_url=server.url(user), smtp_ca_file=str(certs.cert) if certs else ""
    )


def test_starttls_and_auth(
    store: Store,
    config: Config,
    smtp_factory: Factory,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emails = add_subscribers(store, 8)
    server = smtp_factory(certs=certs, users={"editor": PASSWORD})
    monkeypatch.setenv("MAILER_SMTP_PASSWORD", PASSWORD)
    summary = run(store, tls_config(config, server, certs, "editor"))
    assert sorted(server.recipients) == sorted(emails) and summary.finished
    assert server.handler.logins and all(login == "editor" for login, _ in server.handler.logins)


def test_implicit_tls(store: Store, config: Config, smtp_factory: Factory, certs: Certs) -> None:
    emails = add_subscribers(store, 4)
    server = smtp_factory(certs=certs, implicit_tls=True)
    assert server.url().startswith("smtps://")
    run(store, tls_config(config, server, certs))
    assert sorted(server.recipients) == sorted(emails)


def _assert_ledger_intact(store: Store, total: int) -> None:
    with store.session() as session:
        statuses = session.scalars(select(Delivery.status)).all()
    assert len(statuses) == total and set(statuses) == {DeliveryStatus.PENDING}


def test_wrong_password_stops_the_run_without_showing_it(
    store: Store,
    config: Config,
    smtp_factory: Factory,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emails = add_subscribers(store, 5)
    server = smtp_factory(certs=certs, users={"editor": PASSWORD})
    monkeypatch.setenv("MAILER_SMTP_PASSWORD", "wrong-" + PASSWORD)
    cfg = tls_config(config, server, certs, "editor")
    with pytest.raises(TransportError, match=r"authentication as 'editor'.* failed: 535") as info:
        run(store, cfg)
    text = f"{info.value} {info.value!r} {info.value.__cause__!r} {info.value.__context__!r}"
    assert PASSWORD not in text
    assert PASSWORD not in repr(transport_from_config(cfg))
    assert PASSWORD not in repr(dataclasses.replace(cfg))  # config holds no password at all
    _assert_ledger_intact(store, 5)
    monkeypatch.setenv("MAILER_SMTP_PASSWORD", PASSWORD)
    assert run(store, cfg).finished
    assert sorted(server.recipients) == sorted(emails)


def test_an_untrusted_certificate_stops_the_run(
    store: Store, config: Config, smtp_factory: Factory, certs: Certs
) -> None:
    add_subscribers(store, 3)
    server = smtp_factory(certs=certs)
    with pytest.raises(TransportError, match=r"TLS with 127\.0\.0\.1:.* failed: .*certificate"):
        run(store, tls_config(config, server, None))  # verification is on by default
    _assert_ledger_intact(store, 3)
    assert server.recipients == []


def test_an_unreachable_server_stops_the_run(store: Store, config: Config) -> None:
    add_subscribers(store, 3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = dataclasses.replace(config, smtp_url=f"smtp://127.0.0.1:{port}")
    with pytest.raises(TransportError, match=rf"cannot connect to 127\.0\.0\.1:{port}: .*refused"):
        run(store, cfg)
    _assert_ledger_intact(store, 3)


class _RemoteTarget(SmtpTarget):
    @property
    def loopback(self) -> bool:  # as if the server were on another host
        return False


def test_starttls_is_required_for_a_remote_host(smtp: SmtpServer) -> None:
    target = _RemoteTarget(scheme="smtp", host="127.0.0.1", port=smtp.port)
    connection = SmtpTransport(target).connect()
    assert isinstance(connection, SmtpConnection)
    with pytest.raises(TransportError, match="does not offer STARTTLS"):
        connection.send("a@example.org", "b@example.org", b"Subject: x\r\n\r\nx\r\n")
    assert smtp.recipients == []


def test_a_refused_envelope_sender_stops_the_run(
    store: Store, config: Config, smtp_factory: Factory
) -> None:
    add_subscribers(store, 4)
    server = smtp_factory(faults=Faults(reject_senders={config.sender}))
    with pytest.raises(TransportError, match=r"refused the envelope sender .* 553 5\.7\.1"):
        run(store, with_server(config, server))
    _assert_ledger_intact(store, 4)  # nobody marked failed for the sender's fault


def test_a_server_refusing_the_message_itself_stops_the_run(
    store: Store, config: Config, smtp_factory: Factory
) -> None:
    add_subscribers(store, 80)
    server = smtp_factory(faults=Faults(reject_message="554 5.7.1 Message rejected as spam"))
    with pytest.raises(TransportError, match=r"refused the message itself 20 times in a row"):
        run(store, with_server(config, server), connections=2)
    statuses = Counter(d.status for d in ledger(store).values())
    assert 20 <= statuses[DeliveryStatus.FAILED] <= 22  # the rest stays pending, resumable
    assert statuses[DeliveryStatus.PENDING] == 80 - statuses[DeliveryStatus.FAILED]


def test_a_raising_gate_abandons_the_message_before_the_final_dot(smtp: SmtpServer) -> None:
    transport = SmtpTransport(SmtpTarget(scheme="smtp", host="127.0.0.1", port=smtp.port))
    connection = transport.connect()
    message = b"Subject: x\r\n\r\nbody\r\n"

    def stop() -> None:
        raise RuntimeError("stopping")

    with pytest.raises(RuntimeError):
        connection.send("a@example.org", "b@example.org", message, stop)
    assert smtp.recipients == []  # the server never saw the final dot
    reply = connection.send("a@example.org", "b@example.org", message)
    assert reply.code == 250 and smtp.recipients == ["b@example.org"]
    connection.close()


# --- test sends and dry runs ---------------------------------------------------------------


def test_a_test_send_goes_to_any_address_and_is_not_recorded(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    add_subscribers(store, 3)
    cfg = with_server(config, smtp)
    sent = service(store, cfg).test_copy(make_issue(), "editor@example.org", "reader0@example.org")
    assert sent.reply.code == 250
    assert sent.persona is not None and sent.persona.email == "reader0@example.org"
    assert smtp.recipients == ["editor@example.org"]
    assert b"Subject: [TEST] Democracy" in smtp.accepted[0][1]
    assert b"Reader 0" in smtp.accepted[0][1]
    with store.session() as session:
        assert session.scalars(select(Issue)).all() == []
        assert session.scalars(select(Delivery)).all() == []


def test_a_dry_run_renders_everything_and_connects_nowhere(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    add_subscribers(store, 25)
    add_subscribers(store, 2, prefix="bad", status=SubscriberStatus.ACTIVE)
    with store.session() as session, session.begin():
        session.scalars(
            select(Subscriber).where(Subscriber.email == "bad0@example.org")
        ).one().email = "bad0 @example.org"
    cfg = with_server(config, smtp)

    result = service(store, cfg).dry_run(make_issue(), retry=False)
    assert result.messages == 26 and result.invalid == ("bad0 @example.org",)
    assert result.total_bytes > 26 * 2000
    assert smtp.handler.sessions == 0 and smtp.recipients == []
    with store.session() as session:
        assert session.scalars(select(Issue)).all() == []


def test_a_dry_run_of_a_started_send_renders_what_the_ledger_has_left(
    store: Store, config: Config, smtp_factory: Factory
) -> None:
    add_subscribers(store, 6)
    server = smtp_factory(faults=Faults(defer={"reader1@example.org": -1}))
    cfg = with_server(config, server)
    assert run(store, cfg).progress.deferred == 1  # after all 4 tries
    add_subscribers(store, 3, prefix="late")  # joined after the snapshot: not on this issue
    sessions = server.handler.sessions

    plain = service(store, cfg).dry_run(make_issue(), retry=False)
    assert (plain.messages, plain.skipped) == (0, 0)  # a plain resume sends nothing
    retried = service(store, cfg).dry_run(make_issue(), retry=True)
    assert (retried.messages, retried.skipped, retried.invalid) == (1, 0, ())
    with store.session() as session, session.begin():
        reader = session.scalars(
            select(Subscriber).where(Subscriber.email == "reader1@example.org")
        ).one()
        change_status(session, reader, SubscriberStatus.UNSUBSCRIBED, source="one-click")
    gone = service(store, cfg).dry_run(make_issue(), retry=True)
    assert (gone.messages, gone.skipped) == (0, 1)
    assert server.handler.sessions == sessions  # connected nowhere
    rows = ledger(store)
    assert rows["reader1@example.org"].status is DeliveryStatus.DEFERRED  # nothing recorded
    assert rows["reader1@example.org"].attempts == 4


def test_the_maildir_transport_and_the_envelope_sender(
    store: Store, config: Config, tmp_path: Path
) -> None:
    emails = add_subscribers(store, 5)
    cfg = dataclasses.replace(
        config, smtp_url="maildir:outbox", envelope_sender="bounces@yuksalish.example.org"
    )
    summary = run(store, cfg)
    assert summary.finished and summary.transport == f"maildir:{config.root / 'outbox'}"
    box = mailbox.Maildir(config.root / "outbox")
    messages = [email.message_from_bytes(box.get_bytes(key)) for key in box.iterkeys()]
    assert sorted(m["Delivered-To"] for m in messages) == sorted(emails)
    assert {m["Return-Path"] for m in messages} == {"<bounces@yuksalish.example.org>"}
    assert all(m["To"].endswith(f"<{m['Delivered-To']}>") for m in messages)


def test_the_envelope_sender_is_the_bounce_address(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    add_subscribers(store, 2)
    run(store, with_server(config, smtp, envelope_sender="bounces@yuksalish.example.org"))
    assert smtp.handler.senders == ["bounces@yuksalish.example.org"] * 2
    assert all(b"From: Democracy in Uzbekistan <newsletter@" in data for _, data in smtp.accepted)


def test_a_password_in_the_url_is_never_shown(config: Config) -> None:
    cfg = dataclasses.replace(config, smtp_url=f"smtps://editor:{PASSWORD}@127.0.0.1:465")
    transport = transport_from_config(cfg)
    assert transport.describe() == "smtps://editor@127.0.0.1:465"
    assert PASSWORD not in repr(transport) and PASSWORD not in repr(smtp_target(cfg))
    assert smtp_target(cfg).password == PASSWORD
