"""DKIM: the fast signer's signatures are dkimpy's, and verify with dkimpy, also after SMTP."""

from __future__ import annotations

import base64
import dataclasses
import email
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.canonicalization import Simple
from send_helpers import add_subscribers, make_issue, service, with_server
from send_smtp_server import SmtpServer

from mailer.compose import compose_issue
from mailer.compose.model import Newsletter
from mailer.config import Config
from mailer.errors import ConfigError
from mailer.send.dkim_signing import DkimSigner
from mailer.send.message import DKIM_HEADERS, MessageFactory, dkim_signer
from mailer.send.ports import Recipient
from mailer.send.run import SendOptions
from mailer.store.db import Store
from mailer.store.models import Subscriber
from mailer.tokens import new_uid
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.mta import ExternalDkim

SELECTOR, DOMAIN = "mail", "yuksalish.example.org"
NAMES = ["", "Ada Lovelace", "Zoë Ünal", "Дилноза Каримова-Абдуллаева, редактор", 'A "q" <b>']


@dataclasses.dataclass(frozen=True)
class Key:
    pem: bytes
    record: bytes  # the DNS TXT record publishing the public key

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return self.record


@pytest.fixture(scope="module")
def key() -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # what `openssl genrsa` writes
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key(pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))


@pytest.fixture
def signing(config_env: Path, key: Key) -> Config:
    from mailer.config import load_config

    (config_env / "dkim.pem").write_bytes(key.pem)
    return dataclasses.replace(
        load_config(),
        dkim_key_file=str(config_env / "dkim.pem"),
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
    )


def split_signature(raw: bytes) -> tuple[bytes, bytes]:
    """(the DKIM-Signature field, the message without it); the signature comes first."""
    assert raw.startswith(b"DKIM-Signature: ")
    end = re.search(rb"\r\n(?![ \t])", raw)
    assert end is not None
    return raw[: end.end()], raw[end.end() :]


def tag(signature: bytes, name: bytes) -> bytes:
    found = re.search(rb"[;\s]" + name + rb"=([^;]*)", signature)
    assert found is not None
    return re.sub(rb"\s+", b"", found.group(1))


def test_the_signature_is_byte_for_byte_what_dkim_sign_makes(signing: Config, key: Key) -> None:
    factory = MessageFactory(make_issue(), signing, signer=dkim_signer(signing))
    headers = [h.encode() for h in factory.signed_headers]  # the same h=, over-signed
    for _ in range(3):  # dkim.sign stamps t= with the current second: retry across a tick
        ours, unsigned = split_signature(
            factory.build(Recipient(new_uid(), "a@example.org", "Zoë"))
        )
        theirs = dkim.sign(
            unsigned,
            SELECTOR.encode(),
            DOMAIN.encode(),
            key.pem,
            canonicalize=(b"relaxed", b"simple"),
            include_headers=headers,
        )
        if tag(theirs, b"t") == tag(ours, b"t"):
            break
    assert ours == theirs
    assert tag(ours, b"c") == b"relaxed/simple" and tag(ours, b"a") == b"rsa-sha256"


@pytest.mark.parametrize("name", NAMES)
def test_signatures_verify_for_any_name_in_to(signing: Config, key: Key, name: str) -> None:
    factory = MessageFactory(make_issue(), signing, signer=dkim_signer(signing))
    recipient = Recipient(new_uid(), "reader@example.org", name)
    raw = factory.build(recipient)
    assert dkim.verify(raw, dnsfunc=key.dns)
    signed = {h.strip() for h in tag(raw, b"h").decode().split(":")}
    assert {h.lower() for h in DKIM_HEADERS} <= signed  # incl. list-unsubscribe-post
    # Any change to a signed header (here: whose unsubscribe link) or to the body fails.
    url = factory.unsubscribe_url(recipient).encode()
    other = factory.unsubscribe_url(Recipient(new_uid(), "x@example.org")).encode()
    for changed in (
        raw.replace(b"List-Unsubscribe: <" + url, b"List-Unsubscribe: <" + other),
        raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"L-U-P: x"),
        raw.replace(b"To: ", b"To: x", 1),
        raw.replace(b">Unsubscribe</a>", b">Unsubscribe!</a>"),
    ):
        assert changed != raw and not dkim.verify(changed, dnsfunc=key.dns)


def test_the_sample_issue_body_is_already_canonical(signing: Config, key: Key) -> None:
    # Why c=.../simple suits us: simple canonicalisation leaves the body we generate as it
    # is (CRLF lines, one final CRLF), and quoted-printable lines are short, 7-bit and never
    # end in whitespace, so no relay has a reason to rewrap or strip them.
    config = dataclasses.replace(signing, layouts_dir=REPO / "layouts")
    factory = MessageFactory(
        compose_issue(SAMPLE_ISSUE, Newsletter.from_config(config)),
        config,
        signer=DkimSigner(config.dkim_key_file, SELECTOR, DOMAIN),
    )
    raw = factory.build(Recipient(new_uid(), "reader@example.org", "Dilnoza Karimova"))
    assert len(raw) > 100_000
    assert dkim.verify(raw, dnsfunc=key.dns)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert Simple.canonicalize_body(body) == body and body.endswith(b"--\r\n")
    lines = body.split(b"\r\n")
    assert max(map(len, lines)) <= 76 and body.isascii()
    assert b"\n" not in body.replace(b"\r\n", b"") and b"\r" not in body.replace(b"\r\n", b"")
    assert not [line for line in lines if line.endswith((b" ", b"\t"))]


def test_signed_copies_verify_after_a_real_smtp_server(
    store: Store, signing: Config, key: Key, smtp: SmtpServer
) -> None:
    emails = add_subscribers(store, 5)
    with store.session() as session, session.begin():
        session.add(
            Subscriber(
                uid=new_uid(),
                email="zoe@example.org",
                email_key="zoe@example.org",
                name="Zoë Ünal-Каримова",
            )
        )
    config = with_server(signing, smtp)
    summary = service(store, config).send(make_issue(), SendOptions(connections=2))
    assert summary.progress.sent == 6
    assert sorted(smtp.recipients) == sorted([*emails, "zoe@example.org"])
    for _, data in smtp.accepted:
        assert data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(data, dnsfunc=key.dns)
    zoe = next(data for rcpt, data in smtp.accepted if rcpt == "zoe@example.org")
    assert b"To: =?utf-8?" in zoe
    # A test send is signed too (its "[TEST]" subject included).
    sent = service(store, config).test_copy(make_issue(), "editor@example.org", "zoe@example.org")
    assert sent.persona is not None and sent.persona.name == "Zoë Ünal-Каримова"
    assert dkim.verify(smtp.accepted[-1][1], dnsfunc=key.dns)


def test_unusable_keys_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="cannot read"):
        DkimSigner(str(missing), SELECTOR, DOMAIN)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key\n")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        DkimSigner(str(garbage), SELECTOR, DOMAIN)
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="must hold an RSA key"):
        DkimSigner(str(ec_key), SELECTOR, DOMAIN)


# A header a forwarder (or an attacker) prepends: verifiers hash the bottom-most copy of each
# h= name first, so without over-signing the original still verifies while clients show the
# new one on top.
PREPENDED = [
    b"From: Your Bank <security@bank.example>\r\n",
    b"List-Unsubscribe: <https://evil.example/u>\r\n",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    b"Subject: Urgent: confirm your password\r\n",
    b"Reply-To: thief@evil.example\r\n",  # absent from this copy: h= still names it once
]


@pytest.mark.parametrize("extra", PREPENDED, ids=lambda h: h.split(b":")[0].decode())
def test_a_prepended_header_breaks_the_signature_for_opendkim_and_mail_dkim(
    signing: Config, key: Key, extra: bytes, dkim_verifiers: Callable[..., ExternalDkim]
) -> None:
    config = dataclasses.replace(signing, reply_to="")
    factory = MessageFactory(make_issue(), config, signer=dkim_signer(config))
    raw = factory.build(Recipient(new_uid(), "reader@example.org", "Ada"))
    intact = dkim_verifiers(raw, key.record)
    assert intact.passed, intact.details
    assert dkim.verify(raw, dnsfunc=key.dns)
    signature, rest = split_signature(raw)
    for forged in (extra + raw, signature + extra + rest):  # above or below the signature
        verdict = dkim_verifiers(forged, key.record)
        assert verdict.opendkim == ("fail",) and verdict.mail_dkim == ("fail",), verdict.details
        assert not dkim.verify(forged, dnsfunc=key.dns)


def test_h_lists_each_signed_header_once_more_than_the_message_has_it(
    signing: Config, key: Key
) -> None:
    for reply_to in ("", "info@yuksalish.example.org"):
        config = dataclasses.replace(signing, reply_to=reply_to)
        factory = MessageFactory(make_issue(), config, signer=dkim_signer(config))
        raw = factory.build(Recipient(new_uid(), "reader@example.org", "Ada"))
        head = email.message_from_bytes(raw)
        signed = Counter(tag(raw, b"h").decode().split(":"))
        assert set(signed) == {h.lower() for h in DKIM_HEADERS}
        for name in DKIM_HEADERS:
            assert signed[name.lower()] == len(head.get_all(name, [])) + 1, name
