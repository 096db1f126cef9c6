"""Addresses beyond ASCII: IDNA domains, SMTPUTF8 local parts; and the settings that hold
addresses or a CA file, refused at load with one line naming the key."""

from __future__ import annotations

import dataclasses
import email
import re
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest
from send_helpers import make_issue, service, with_server
from send_smtp_server import SmtpServer
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.cli import app
from mailer.config import Config, load_config
from mailer.errors import ConfigError
from mailer.send.run import SendOptions
from mailer.store.db import Store
from mailer.store.models import Delivery, DeliveryStatus, Subscriber
from mailer.tokens import new_uid
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.mta import Mailbox, Postfix, new_token

Factory = Callable[..., SmtpServer]
IDN = "x@bücher.example"
IDN_ASCII = "x@xn--bcher-kva.example"
UTF8_LOCAL = "jörg@example.org"


def add(store: Store, *emails: str) -> None:
    with store.session() as session, session.begin():
        session.add_all(
            Subscriber(uid=new_uid(), email=e, email_key=e.lower(), name=f"Reader {i}")
            for i, e in enumerate(emails)
        )


def deliveries(store: Store) -> dict[str, Delivery]:
    with store.session() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
    return {e: d for e, d in rows}


def parsed(raw: bytes) -> email.message.EmailMessage:
    # From text: message_from_bytes would read a UTF-8 header (RFC 6532) as surrogates.
    message = email.message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


# --- settings -------------------------------------------------------------------------------


def mailer(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "key", ["from_address", "reply_to", "envelope_sender", "unsubscribe_mailto"]
)
def test_a_non_ascii_local_part_in_a_setting_is_one_line_at_load(
    config_env: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    # Chosen: refused (not sent with SMTPUTF8): every copy would need SMTPUTF8 at every
    # server on the way to every reader; one without it bounces the copy.
    monkeypatch.setenv(f"MAILER_{key.upper()}", "jörg@example.org")
    with pytest.raises(ConfigError, match=rf"^{key}: 'jörg@example.org' has a non-ASCII local"):
        load_config()
    code, output = mailer("send", str(SAMPLE_ISSUE), "--to", "editor@example.org")
    assert code == 1 and output.startswith(f"error: {key}: 'jörg@example.org' has a non-ASCII")
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_an_idn_domain_in_a_setting_is_kept_in_a_labels(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_FROM_ADDRESS", "news@bücher.example")
    monkeypatch.setenv("MAILER_UNSUBSCRIBE_MAILTO", "mailto:stop@bücher.example?subject=stop")
    monkeypatch.delenv("MAILER_LIST_ID_DOMAIN", raising=False)
    config = load_config()
    assert config.from_address == "news@xn--bcher-kva.example"
    assert config.unsubscribe_mailto == "mailto:stop@xn--bcher-kva.example?subject=stop"


def test_an_smtp_ca_file_that_is_no_certificate_is_one_line(
    config_env: Path, store: Store, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = config_env / "ca.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", smtp.url())
    monkeypatch.setenv("MAILER_SMTP_CA_FILE", str(garbage))
    for args in (("--to", "editor@example.org"), ("--yes",)):
        code, output = mailer("send", str(SAMPLE_ISSUE), *args)
        assert code == 1, output
        assert output == f"error: smtp_ca_file: {garbage} holds no PEM certificate to trust\n"
    assert smtp.recipients == []


# --- IDNA and SMTPUTF8 ----------------------------------------------------------------------


def test_an_idn_domain_goes_out_in_a_labels(store: Store, config: Config, smtp: SmtpServer) -> None:
    add(store, IDN, "plain@example.org")
    summary = service(store, with_server(config, smtp)).send(make_issue(), SendOptions())
    assert summary.progress.sent == 2 and summary.finished
    assert sorted(smtp.recipients) == ["plain@example.org", IDN_ASCII]
    raw = dict(smtp.accepted)[IDN_ASCII]
    assert raw.isascii()  # no SMTPUTF8 needed: the domain is IDNA
    assert parsed(raw)["To"].addresses[0].addr_spec == IDN_ASCII
    assert smtp.handler.mail_options == [[], []]
    assert deliveries(store)[IDN].status is DeliveryStatus.SENT


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_non_ascii_local_part_goes_with_smtputf8_when_the_server_offers_it(
    store: Store, config: Config, smtp_factory: Factory, pipelining: bool
) -> None:
    add(store, UTF8_LOCAL, "plain@example.org", "zoë@bücher.example")
    server = smtp_factory(smtputf8=True, pipelining=pipelining)
    summary = service(store, with_server(config, server)).send(make_issue(), SendOptions())
    assert summary.progress.sent == 3 and summary.finished
    received = dict(server.accepted)
    assert sorted(received) == [
        "jörg@example.org",
        "plain@example.org",
        "zoë@xn--bcher-kva.example",
    ]
    for address in ("jörg@example.org", "zoë@xn--bcher-kva.example"):
        message = parsed(received[address])
        assert message["To"].addresses[0].addr_spec == address
        assert message["To"].addresses[0].display_name.startswith("Reader ")
    options = sorted(server.handler.mail_options)
    assert options == [[], ["SMTPUTF8", "BODY=8BITMIME"], ["SMTPUTF8", "BODY=8BITMIME"]]
    assert received["plain@example.org"].isascii()


def test_without_smtputf8_a_non_ascii_local_part_fails_with_the_reason(
    store: Store, config: Config, smtp: SmtpServer
) -> None:
    add(store, UTF8_LOCAL, "plain@example.org", IDN)
    cfg = with_server(config, smtp)
    summary = service(store, cfg).send(make_issue(), SendOptions())
    assert sorted(smtp.recipients) == ["plain@example.org", IDN_ASCII]
    assert summary.progress.failed == 1 and summary.progress.bounced == 0 and summary.finished
    row = deliveries(store)[UTF8_LOCAL]
    assert row.status is DeliveryStatus.FAILED
    assert re.fullmatch(
        r"553 5\.6\.7 not sent: <jörg@example\.org> has a non-ASCII local part, which needs "
        r"SMTPUTF8, and 127\.0\.0\.1:\d+ does not offer it",
        row.last_reply,
    )
    assert smtp.handler.senders == [config.sender] * 2  # nothing was tried for it


def test_a_non_ascii_local_part_through_the_real_postfix(
    store: Store, config: Config, postfix: Postfix, bounce_mailbox: Mailbox
) -> None:
    token = new_token()
    address = f"{bounce_mailbox.user}+jörg{token}@{bounce_mailbox.domain}"
    add(store, address)
    cfg = dataclasses.replace(config, smtp_url=postfix.smtp_url, smtp_ca_file=str(postfix.ca_file))
    summary = service(store, cfg).send(make_issue(), SendOptions(connections=1))
    assert summary.progress.sent == 1, deliveries(store)[address].last_reply
    delivered = bounce_mailbox.wait_for(lambda m: token in str(m.get("X-Original-To", "")))
    message = parsed(delivered.raw)
    assert message["X-Original-To"] == address
    assert message["To"].addresses[0].addr_spec == address
    assert "with UTF8SMTPS" in " ".join(str(message["Received"]).split())
