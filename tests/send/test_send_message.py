"""The per-recipient message: headers, MIME structure, bodies, tokens, DKIM."""

from __future__ import annotations

import base64
import dataclasses
import email
import random
import re
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

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
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # RFC 2045's limit


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


# --- hardening (issue 9) -------------------------------------------------------------------


def _body_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")


def test_every_quoted_printable_line_is_at_most_76_octets(
    config_env: object, rng: random.Random
) -> None:
    # RFC 2045 6.7: encoded lines of at most 76 characters (the dot escape once made 78).
    from mailer.config import load_config

    config = load_config()
    for _ in range(300):
        issue = _tricky_issue(rng.randrange(2**32))
        factory = MessageFactory(issue, config)
        reader = Recipient(new_uid(), "r@example.org", rng.choice(["", ". x", "é" * 40, "." * 90]))
        raw = factory.build(reader)
        longest = max(_body_lines(raw), key=len)
        assert len(longest) <= 76, longest
        html, text = issue.personalise(factory.values(reader))
        assert bodies(parse(raw)) == (text.replace("\r\n", "\n"), html.replace("\r\n", "\n"))


def test_the_sample_issue_has_no_quoted_printable_line_over_76_octets(
    config_env: object,
) -> None:
    from mailer.compose import compose_issue
    from mailer.compose.model import Newsletter
    from mailer.config import load_config
    from tests.conftest import REPO, SAMPLE_ISSUE

    config = dataclasses.replace(load_config(), layouts_dir=REPO / "layouts")
    issue = compose_issue(SAMPLE_ISSUE, Newsletter.from_config(config))
    factory = MessageFactory(issue, config)
    reader = Recipient(new_uid(), "reader@example.org", "Dilnoza Karimova")
    raw = factory.build(reader)
    lines = _body_lines(raw)
    assert any(line.startswith(b"=2E") for line in lines)  # the case that made 78
    assert max(map(len, lines)) <= 76
    html, text = issue.personalise(factory.values(reader))
    assert bodies(parse(raw)) == (text.replace("\r\n", "\n"), html.replace("\r\n", "\n"))


def shown(raw: bytes, name: str) -> str:
    """A header as an RFC 2047 reader shows it (email.headerregistry inserts a space between
    adjacent encoded words of a display name, which RFC 2047 6.2 says to drop)."""
    value = re.sub(r"\r\n(?=[ \t])", "", email.message_from_bytes(raw)[name])  # unfold
    return str(make_header(decode_header(value)))


def _header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize(
    "from_name",
    ["x" * 2000, "Ünïcødé" * 300, "word " * 400, 'a "quoted" (name), <with> specials' * 30],
)
def test_a_huge_name_or_subject_folds_into_short_header_lines(
    config_env: object, from_name: str
) -> None:
    from mailer.config import load_config

    config = dataclasses.replace(load_config(), from_name=from_name)
    issue = make_issue(subject=from_name)
    raw = MessageFactory(issue, config).build(Recipient(new_uid(), "r@example.org", from_name))
    for line in _header_lines(raw):
        # Long URLs aside (List-Unsubscribe cannot fold inside <...>), every line fits 78.
        assert len(line) <= (998 if line.startswith(b"List-Unsubscribe: <") else 78), line
    expected = " ".join(from_name.split())
    assert shown(raw, "From") == f"{expected} <newsletter@yuksalish.example.org>"
    assert shown(raw, "To") == f"{expected} <r@example.org>"
    assert shown(raw, "Subject") == parse(raw)["Subject"] == expected


@pytest.mark.parametrize(
    "literal", ["=?utf-8?b?SGVsbG8=?=", "Zoë =?UTF-8?Q?Mallory?=", "=?iso-8859-1?q?a?= ="]
)
def test_a_literal_encoded_word_is_shown_as_typed(config_env: object, literal: str) -> None:
    from mailer.config import load_config

    config = dataclasses.replace(load_config(), from_name=literal)
    raw = MessageFactory(make_issue(subject=literal), config).build(
        Recipient(new_uid(), "r@example.org", literal)
    )
    message = parse(raw)
    assert message["Subject"] == shown(raw, "Subject") == literal
    assert message["From"].addresses[0].display_name == literal
    assert message["To"].addresses[0].display_name == literal
    assert shown(raw, "To") == f"{literal} <r@example.org>"
    assert literal.encode() not in raw.split(b"\r\n\r\n", 1)[0]  # never as it was typed


def test_a_mailto_with_a_subject_is_used_as_it_is(config_env: object) -> None:
    from mailer.config import load_config

    for mailto, expected in (
        ("mailto:u@example.org?subject=stop", "<mailto:u@example.org?subject=stop>"),
        ("mailto:u@example.org", "<mailto:u@example.org?subject=unsubscribe>"),
    ):
        config = dataclasses.replace(load_config(), unsubscribe_mailto=mailto)
        raw = MessageFactory(make_issue(), config).build(Recipient(new_uid(), "a@b.org"))
        assert parse(raw)["List-Unsubscribe"].endswith(", " + expected)


def test_the_view_in_browser_url_is_percent_encoded(config_env: object) -> None:
    from mailer.config import load_config

    issue = make_issue(slug="026-juni Ausgabe/ü?#")
    factory = MessageFactory(issue, load_config())
    web = "http://127.0.0.1:8000/issues/026-juni%20Ausgabe%2F%C3%BC%3F%23"
    assert factory.web_url == web
    text, html = bodies(parse(factory.build(Recipient(new_uid(), "a@example.org"))))
    assert f"browser: {web}\n" in text and f'href="{web}"' in html


def test_the_message_id_survives_a_key_rotation(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer.config import load_config

    reader = Recipient(new_uid(), "r@example.org")
    before = MessageFactory(make_issue(), load_config()).message_id(reader)
    old = (config_env / ".mailer-secret").read_text()
    (config_env / ".mailer-secret").write_text("a-brand-new-key-of-more-than-32-chars\n" + old)
    rotated = MessageFactory(make_issue(), load_config())
    assert rotated.message_id(reader) == before
    assert rotated.message_id(Recipient(new_uid(), "r@example.org")) != before
    assert MessageFactory(make_issue(number=26), load_config()).message_id(reader) != before


def test_auto_replies_are_discouraged_and_the_copy_is_not_auto_submitted(
    factory: MessageFactory,
) -> None:
    message = parse(factory.build(Recipient(new_uid(), "r@example.org")))
    assert message["Precedence"] == "bulk"
    assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert message["Auto-Submitted"] is None  # RFC 3834: people wrote it (see message.py)


def test_every_copy_links_to_its_preferences_page(config_env: object) -> None:
    """The sample layout's footer (and the text twin) carry the reader's preferences link: a
    preferences token for this subscriber and issue, which is no unsubscribe token."""
    from mailer.compose import compose_issue
    from mailer.compose.model import Newsletter
    from mailer.config import load_config
    from mailer.errors import TokenError
    from mailer.tokens import read_preferences_token
    from tests.conftest import REPO, SAMPLE_ISSUE

    config = dataclasses.replace(load_config(), layouts_dir=REPO / "layouts")
    factory = MessageFactory(compose_issue(SAMPLE_ISSUE, Newsletter.from_config(config)), config)
    uid = new_uid()
    text, html = bodies(parse(factory.build(Recipient(uid, "reader@example.org", "R"))))
    [url] = set(re.findall(r"http://127\.0\.0\.1:8000/preferences/[A-Za-z0-9_-]+", html))
    assert f'href="{url}"' in html and f"\n{url}\n" in text
    claims = read_preferences_token(config.secret_keys(), url.rsplit("/", 1)[1])
    assert (claims.subscriber_uid, claims.issue_number) == (uid, 25)
    with pytest.raises(TokenError):
        read_token(config.secret_keys(), url.rsplit("/", 1)[1])
    assert "/preferences/" not in factory.issue.web_html  # no reader's link on the web
