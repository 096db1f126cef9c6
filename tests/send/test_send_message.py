"""The per-recipient message: headers, MIME structure, bodies, tokens, DKIM."""

from __future__ import annotations

import base64
import dataclasses
import email
import random
import re
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import dkim
import pytest
from send_helpers import make_issue

from mailer.compose.model import ComposedIssue, PersonalTemplate, slot
from mailer.config import Config
from mailer.errors import InvalidAddress
from mailer.send.dkim_signing import DkimSigner
from mailer.send.message import DKIM_HEADERS, MessageFactory, qp_encode
from mailer.send.ports import Recipient
from mailer.tokens import new_uid, read_token


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = list(message.iter_parts())
    return (
        text.get_content().replace("\r\n", "\n"),
        html.get_content().replace("\r\n", "\n"),
    )


@pytest.fixture
def factory(config_env: object) -> MessageFactory:
    from mailer.config import load_config

    return MessageFactory(make_issue(), load_config())


def test_headers_and_structure(factory: MessageFactory) -> None:
    reader = Recipient(new_uid(), "ada@example.org", "Ada Lovelace")
    message = parse(factory.build(reader))
    assert message["From"] == "Democracy in Uzbekistan <newsletter@yuksalish.example.org>"
    assert message["Reply-To"] == "info@yuksalish.example.org"
    assert message["To"] == "Ada Lovelace <ada@example.org>"
    assert message["Subject"] == "Democracy in Uzbekistan #25"
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert re.fullmatch(r"<25\.[0-9a-f]{32}@yuksalish\.example\.org>", message["Message-ID"])
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"] == (
        "Democracy in Uzbekistan <democracy-in-uzbekistan.yuksalish.example.org>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = list(message.iter_parts())
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize(
    "name",
    [
        "Ada Lovelace",
        "",
        "Zoë SSörensen-Ünal",
        "Тимур Каримов",
        '<b>Bold</b> & "Quoted"',
        "x" * 150,
    ],
)
def test_bodies_are_exactly_the_personalised_issue(factory: MessageFactory, name: str) -> None:
    reader = Recipient(new_uid(), "reader@example.org", name)
    message = parse(factory.build(reader))
    html, text = factory.issue.personalise(factory.values(reader))
    assert bodies(message) == (text, html)


def _tricky_issue(seed: int) -> ComposedIssue:
    """Templates full of what quoted-printable and SMTP find hard, slots anywhere."""
    rng = random.Random(seed)
    atoms = [
        ".",
        "..",
        ". ",
        "=",
        "=3D",
        "  ",
        "\t",
        " \n",
        "\n",
        "\n.",
        "\n..\n",
        "é",
        "€",
        "日本",
        "=\n",
        "From ",
        "x" * 90,
        "a",
        "--=_mailer_",
        "\r\n",
        "<a href='x'>",
    ]
    slots = [slot(f) for f in ("name", "email", "unsubscribe_url", "web_url")]

    def template() -> str:
        return "".join(rng.choice(atoms + slots) for _ in range(rng.randint(0, 80)))

    base = make_issue()
    return dataclasses.replace(
        base,
        html=PersonalTemplate.parse(template()),
        text=PersonalTemplate.parse(template()),
    )


@pytest.mark.parametrize("seed", range(40))
def test_quoted_printable_pieces_decode_to_the_filled_template(
    config_env: object, seed: int
) -> None:
    from mailer.config import load_config

    issue = _tricky_issue(seed)
    factory = MessageFactory(issue, load_config())
    reader = Recipient(new_uid(), "r@example.org", random.Random(seed).choice(["", " é .", "A=B"]))
    raw = factory.build(reader)
    html, text = issue.personalise(factory.values(reader))
    normal = (text.replace("\r\n", "\n"), html.replace("\r\n", "\n"))
    assert bodies(parse(raw)) == normal
    _assert_wire_safe(raw)


def _assert_wire_safe(raw: bytes) -> None:
    assert b"\r\n" in raw
    lines = raw.split(b"\r\n")
    for line in lines:
        assert b"\n" not in line and b"\r" not in line, line
        assert len(line) <= 998
        assert not line.startswith(b"."), line  # no dot-stuffing needed on the wire
    assert raw.isascii()


def test_lines_are_short_crlf_and_ascii(factory: MessageFactory) -> None:
    raw = factory.build(Recipient(new_uid(), "reader@example.org", "Zoë"))
    _assert_wire_safe(raw)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 78  # QP: 76 (+2 for "=2E")


def test_non_ascii_subject_and_name_are_rfc2047(config_env: object) -> None:
    from mailer.config import load_config

    issue = make_issue(subject="Демократия в Узбекистане — май 2022")
    factory = MessageFactory(issue, load_config())
    raw = factory.build(Recipient(new_uid(), "t@example.org", "Тимур Каримов"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    message = parse(raw)
    assert message["Subject"] == "Демократия в Узбекистане — май 2022"
    assert message["To"].addresses[0].display_name == "Тимур Каримов"
    assert message["To"].addresses[0].addr_spec == "t@example.org"


def test_a_name_cannot_inject_headers(factory: MessageFactory) -> None:
    reader = Recipient(new_uid(), "eve@example.org", "Eve\r\nBcc: victim@example.org\nX: y")
    raw = factory.build(reader)
    message = parse(raw)
    assert message["Bcc"] is None and message["X"] is None
    assert not re.search(rb"^(Bcc|X):", raw, re.MULTILINE | re.IGNORECASE)
    assert message["To"].addresses[0].addr_spec == "eve@example.org"
    with pytest.raises(InvalidAddress):
        factory.build(Recipient(new_uid(), "eve@example.org\r\nBcc: x@example.org", ""))
    with pytest.raises(InvalidAddress):
        factory.build(Recipient(new_uid(), "<eve@example.org>", ""))


def test_unsubscribe_url_is_the_same_in_header_and_both_bodies(factory: MessageFactory) -> None:
    keys = factory._keys
    uid = new_uid()
    message = parse(factory.build(Recipient(uid, "reader@example.org", "R")))
    header = message["List-Unsubscribe"]
    match = re.fullmatch(r"<(http://127\.0\.0\.1:8000/unsubscribe/([A-Za-z0-9_-]+))>", header)
    assert match, header
    url, token = match.groups()
    text, html = bodies(message)
    assert f"Unsubscribe: {url}" in text
    assert f'<a href="{url}">Unsubscribe</a>' in html
    claims = read_token(keys, token)
    assert (claims.subscriber_uid, claims.issue_number) == (uid, 25)
    web = "http://127.0.0.1:8000/issues/025-may-2022"
    assert f"browser: {web}" in text and f'href="{web}"' in html


def test_mailto_unsubscribe_when_configured(config_env: object) -> None:
    from mailer.config import load_config

    config = dataclasses.replace(load_config(), unsubscribe_mailto="mailto:leave@example.org")
    message = parse(MessageFactory(make_issue(), config).build(Recipient(new_uid(), "a@b.org")))
    assert re.fullmatch(
        r"<http://\S+/unsubscribe/\S+>, <mailto:leave@example\.org\?subject=unsubscribe>",
        message["List-Unsubscribe"],
    )


def test_message_ids_unique_per_copy_and_stable_per_recipient(factory: MessageFactory) -> None:
    readers = [Recipient(new_uid(), f"r{i}@example.org") for i in range(50)]
    ids = [parse(factory.build(r))["Message-ID"] for r in readers]
    assert len(set(ids)) == 50
    assert parse(factory.build(readers[0]))["Message-ID"] == ids[0]


def test_test_copies_are_marked_and_use_issue_zero(config_env: object) -> None:
    from mailer.config import load_config

    factory = MessageFactory(make_issue(), load_config(), test=True)
    uid = new_uid()
    raw = factory.build(Recipient(uid, "sub@example.org", "Sub"), to="editor@example.org")
    message = parse(raw)
    assert message["Subject"] == "[TEST] Democracy in Uzbekistan #25"
    assert message["To"] == "Sub <editor@example.org>"
    token = message["List-Unsubscribe"].rsplit("/", 1)[1].rstrip(">")
    assert read_token(factory._keys, token).issue_number == 0


def test_qp_encode_never_starts_a_line_with_a_dot() -> None:
    encoded = qp_encode(".start\n.middle\n..\n.")
    assert not any(line.startswith(b".") for line in encoded.split(b"\r\n"))
    assert encoded.startswith(b"=2E")


def _dkim_key(tmp_path: object) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signature_verifies_and_covers_the_list_headers(config_env: object, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mailer.config import load_config

    private, record = _dkim_key(tmp_path)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(private)
    config: Config = dataclasses.replace(
        load_config(),
        dkim_key_file=str(key_file),
        dkim_selector="mail",
        dkim_domain="yuksalish.example.org",
    )
    signer = DkimSigner(config.dkim_key_file, config.dkim_selector, config.dkim_domain)
    factory = MessageFactory(make_issue(), config, signer=signer)
    raw = factory.build(Recipient(new_uid(), "reader@example.org", "Zoë"))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.yuksalish.example.org."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    signature = parse(raw)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", signature).group(1).split(":")}
    required = {"from", "subject", "date", "to", "message-id", "list-id", "list-unsubscribe"}
    assert required | {"list-unsubscribe-post"} <= signed
    assert {h.lower() for h in DKIM_HEADERS} <= signed
    tampered = raw.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nope"
    )
    assert not dkim.verify(tampered, dnsfunc=dns)
