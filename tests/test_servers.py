"""Smoke tests of the real mail servers (scripts/test-services) and of the fixtures on them."""

from __future__ import annotations

import base64
import email.policy
import imaplib
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage, Message

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import mta
from tests.mta import ExternalDkim, ImapAccount, Mailbox, Postfix, SmtpSink, SpamAssassin, new_token

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(token: str, to: str, body: str = "Hello from the mailer tests.\n") -> EmailMessage:
    """A small message; send ``wire(msg)``: smtplib sends bytes as they are (CRLF needed)."""
    msg = EmailMessage()
    msg["From"] = "Mailer Tests <editor@localhost>"
    msg["To"] = to
    msg["Subject"] = f"smoke {token}"
    msg["Message-ID"] = f"<{token}@mailer.test>"
    msg["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    msg.set_content(body)
    return msg


def wire(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=email.policy.SMTP)


def report_parts(dsn: EmailMessage) -> tuple[list[Message], Message]:
    """(delivery-status field blocks, the returned message's headers) of a DSN."""
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    returned = next(
        p for p in dsn.walk() if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")
    )
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    if returned.get_content_type() == "message/rfc822":
        original = returned.get_payload()[0]
    else:
        original = mta.parse(returned.get_payload(decode=True))
    return blocks, original


@pytest.mark.parametrize("alias", [False, True], ids=["user", "alias"])
def test_unknown_local_user_bounces_into_the_maildir(
    postfix: Postfix, bounce_mailbox: Mailbox, alias: bool
) -> None:
    token = new_token()
    sender = bounce_mailbox.address(token, alias=alias)
    sent = message(token, "nosuchuser@localhost")
    assert postfix.send(wire(sent), mail_from=sender, to=["nosuchuser@localhost"]) == {}

    dsn = bounce_mailbox.wait_for_token(token).message
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["X-Original-To"] == sender
    assert dsn["Return-Path"] == "<>"  # sent with a null sender: a bounce never bounces
    blocks, original = report_parts(dsn)
    recipient = blocks[1]
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Final-Recipient"].replace(" ", "") == "rfc822;nosuchuser@localhost"
    assert original["Message-ID"] == sent["Message-ID"]
    assert original["Subject"] == sent["Subject"]


def test_relay_to_a_sink_domain_reaches_smtp_sink(postfix: Postfix, smtp_sink: SmtpSink) -> None:
    token = new_token()
    to = smtp_sink.address(f"reader+{token}")
    sent = message(token, to)
    sender = f"mailer-bounces+{token}@localhost"
    assert postfix.send(wire(sent), mail_from=sender, to=[to]) == {}

    got = smtp_sink.wait_for(lambda m: m.message["Message-ID"] == sent["Message-ID"])
    assert (got.mail_from, got.rcpt_to) == (sender, (to,))
    assert got.message["Subject"] == sent["Subject"]
    assert got.message.get_content() == sent.get_content()
    assert "(Postfix)" in str(got.message["Received"])


def test_a_sink_that_refuses_makes_postfix_bounce(
    postfix: Postfix, smtp_sink_factory: Callable[..., SmtpSink], bounce_mailbox: Mailbox
) -> None:
    sink = smtp_sink_factory("-f", "RCPT")  # 5xx to every RCPT TO
    token = new_token()
    to = sink.address()
    sent = wire(message(token, to))
    postfix.send(sent, mail_from=bounce_mailbox.address(token), to=[to])

    blocks, original = report_parts(bounce_mailbox.wait_for_token(token).message)
    assert blocks[1]["Status"].startswith("5.")
    assert blocks[1]["Remote-MTA"] == "dns; 127.0.0.1"
    assert str(blocks[1]["Diagnostic-Code"]).startswith("smtp;")
    assert original["Message-ID"] == f"<{token}@mailer.test>"


def test_nothing_leaves_the_machine(postfix: Postfix) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        sent = wire(message(new_token(), "someone@example.com"))
        postfix.send(sent, mail_from="editor@localhost", to=["someone@example.com"])
    code, text = refused.value.recipients["someone@example.com"]
    assert code == 550 and b"outbound mail is disabled" in text


def test_postfix_offers_starttls_with_the_test_certificate(postfix: Postfix) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        with pytest.raises(ssl.SSLCertVerificationError):
            smtp.starttls(context=ssl.create_default_context())  # the system CAs: no


def test_imaps_sees_a_delivered_message_and_moves_it(
    bounce_mailbox: Mailbox, imap_account: ImapAccount
) -> None:
    token = new_token()
    sent = message(token, bounce_mailbox.address(token))
    bounce_mailbox.put(wire(sent))
    folder = f"Moved-{token}"
    with imap_account.connect() as imap:
        status, listing = imap.list()
        assert status == "OK" and any(b" INBOX" in line for line in listing)
        imap.select("INBOX")
        uids = uid_search(imap, sent["Message-ID"])
        assert len(uids) == 1
        assert imap.create(folder)[0] == "OK"
        try:
            assert imap.uid("MOVE", uids[0], folder)[0] == "OK"
            assert uid_search(imap, sent["Message-ID"]) == []
            imap.select(folder)
            (moved,) = uid_search(imap, sent["Message-ID"])
            _, data = imap.uid("FETCH", moved, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert sent["Subject"].encode() in data[0][1]
        finally:
            imap.select("INBOX")
            imap.delete(folder)


def uid_search(imap: imaplib.IMAP4, message_id: str) -> list[bytes]:
    status, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
    assert status == "OK"
    return data[0].split()


@pytest.mark.parametrize("tls", ["starttls", "none"])
def test_plain_imap_logs_in(imap_account: ImapAccount, tls: str) -> None:
    with imap_account.connect(tls) as imap:
        assert imap.select("INBOX", readonly=True)[0] == "OK"


def test_imaps_refuses_a_wrong_password_and_an_unknown_ca(imap_account: ImapAccount) -> None:
    wrong = ImapAccount(password="not-the-password")
    with pytest.raises(imaplib.IMAP4.error), wrong.connect():
        pass
    with pytest.raises(ssl.SSLCertVerificationError):
        # imaplib verifies nothing unless given a context: give it the system's CAs only.
        system = ssl.create_default_context()
        imaplib.IMAP4_SSL(imap_account.host, imap_account.ssl_port, ssl_context=system)


def test_spamassassin_scores_a_message(spamassassin: SpamAssassin) -> None:
    token = new_token()
    ham = spamassassin.check(wire(message(token, "reader@localhost")))
    print(ham.status)  # the score line, for the log
    assert ham.required == 5.0 and not ham.is_spam and ham.score < ham.required
    assert ham.rules  # it ran its rules: a bare message trips the informational ones

    spam = spamassassin.check(wire(message(token, "reader@localhost", f"{GTUBE}\n")))
    print(spam.status)
    assert spam.is_spam and "GTUBE" in spam.rules and spam.score >= 1000


def dkim_record(key: rsa.RSAPrivateKey) -> str:
    """The DNS TXT record publishing ``key``'s public half."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def test_external_verifiers_pass_dkimpy_and_fail_tampering(
    dkim_verifiers: Callable[..., ExternalDkim],
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    record = dkim_record(key)
    raw = wire(message(new_token(), "reader@localhost"))
    signed = dkim.sign(raw, b"mail", b"mailer.test", pem) + raw

    good = dkim_verifiers(signed, record)
    assert good.passed, good.details
    assert good.opendkim == ("pass",) and good.mail_dkim == ("pass",)

    tampered = dkim_verifiers(signed.replace(b"Hello", b"Jello"), record)
    assert not tampered.passed
    assert tampered.opendkim == ("fail",) and tampered.mail_dkim == ("fail",), tampered.details

    other = dkim_verifiers(signed, dkim_record(rsa.generate_private_key(65537, 2048)))
    assert not other.passed and other.mail_dkim == ("fail",), other.details


def test_require_skips_or_fails_as_ci_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    mta.require("nothing", None)  # no problem: no effect
    monkeypatch.delenv(mta.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="Postfix: down"):
        mta.require("Postfix", "down")
    monkeypatch.setenv(mta.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="may not be skipped"):
        mta.require("Postfix", "down")
