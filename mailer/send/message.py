"""Building one personalised message per recipient, as bytes, fast.

Everything that is the same for every copy is encoded once per issue in
:class:`MessageFactory`: the constant headers, and the quoted-printable text of both bodies
cut at their slots. Quoted-printable lets the pieces be encoded separately: each piece ends
with a soft line break (``=\\r\\n``), which decodes to nothing, so

    qp(part0) =CRLF qp(value1) =CRLF qp(part1) ...   decodes to   part0 value1 part1 ...

exactly the filled template. Per recipient only the few small values (name, address,
unsubscribe URL) are encoded and the pieces joined: no ``email.message`` object, no MJML, no
premailer. Body lines stay within RFC 2045's 76 octets, every line ends in CRLF, and no line
starts with ``.`` (written ``=2E``), so the bytes go to SMTP ``DATA`` as they are. The header
lines come from :mod:`mailer.send.headers` (folded, encoded, IDNA).

With DKIM on, the body hash is fed from the same pieces (the body up to the first personal
field is hashed once per issue) and :mod:`mailer.send.dkim_signing` signs the header block.
"""

from __future__ import annotations

import email.quoprimime
import hashlib
import html
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from urllib.parse import quote

from mailer.compose.model import ComposedIssue, PersonalTemplate
from mailer.config import Config
from mailer.errors import ConfigError
from mailer.send.dkim_signing import DkimSigner
from mailer.send.headers import clean, smtp_address, unstructured, with_phrase
from mailer.send.ports import Recipient
from mailer.tokens import make_preferences_token, make_token, make_verp_token

# The headers a DKIM signature covers (dkimpy's default omits List-Unsubscribe-Post). Each
# is listed in h= once more than the message has it (RFC 6376 8.15, "over-signing"): a
# verifier then hashes an empty field for the extra name, so a second From:, Subject: or
# List-Unsubscribe: prepended on the way breaks the signature instead of being shown.
DKIM_HEADERS = (
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
# Out-of-office and other auto-replies go to Reply-To: these keep them from answering every
# copy. Precedence: bulk is what vacation programs have long honoured (RFC 3834 2 mentions
# it), X-Auto-Response-Suppress is Exchange/Outlook's own. No Auto-Submitted: RFC 3834 5
# keeps it for messages a program originates (auto-generated: a cron report) or answers
# (auto-replied); an issue is written by people for readers who asked for it, and a
# message marked auto-submitted is treated as a robot's (some servers do not forward it,
# mailing lists drop it). The List-Id already tells RFC 5230 vacation responders it is
# list mail.
_QUIET_HEADERS = b"Precedence: bulk\r\nX-Auto-Response-Suppress: OOF, AutoReply\r\n"
_SOFT_BREAK = b"=\r\n"
# Lines of email.quoprimime's encoder (the one email.charset uses); RFC 2045 allows 76
# octets: the 3 kept free take a leading dot's "=2E" (+2) and the soft break that closes a
# piece (+1).
_QP_WIDTH = 73


# Text that quoted-printable leaves as it is (printable ASCII but "=", no space at the end):
# the per-recipient values nearly always. Encoding it is only cutting it into lines with
# soft breaks, done here because quoprimime (pure Python) costs several us a value.
_QP_LITERAL = re.compile(r"[ -<>-~]*[!-<>-~]")


def qp_encode(text: str) -> bytes:
    """Quoted-printable (UTF-8) with CRLF line ends and no line starting with a dot: lines of
    at most 73 octets, 75 where a leading dot became ``=2E`` (76 with :func:`_piece`'s break)."""
    if _QP_LITERAL.fullmatch(text):
        width = _QP_WIDTH - 1  # and "=" for the soft break
        lines = [text[i : i + width] for i in range(0, len(text), width)]
        encoded = "=\r\n".join(lines).encode("ascii")
        if b"\n." in encoded or encoded.startswith(b"."):
            encoded = _escape_dots(encoded)
        return encoded
    raw = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8").decode("latin-1")
    encoded = email.quoprimime.body_encode(raw, maxlinelen=_QP_WIDTH, eol="\r\n").encode("ascii")
    return _escape_dots(encoded)


def _escape_dots(encoded: bytes) -> bytes:
    """No line starting with ``.`` (written ``=2E``): the bytes need no dot-stuffing."""
    if encoded.startswith(b"."):
        encoded = b"=2E" + encoded[1:]
    return encoded.replace(b"\r\n.", b"\r\n=2E")


def _piece(text: str) -> bytes:
    """A QP piece that joins to what follows without adding anything (soft break)."""
    return qp_encode(text) + _SOFT_BREAK if text else b""


@dataclass(frozen=True)
class _BodyPlan:
    """A body as alternating encoded static pieces and the fields between them."""

    pieces: tuple[bytes, ...]  # len(fields) + 1, already QP-encoded with soft breaks
    fields: tuple[str, ...]


def _plan(template: PersonalTemplate, constants: dict[str, str], escape: bool) -> _BodyPlan:
    # Fold constant fields (web_url) into the static text, then cut at the remaining slots.
    parts: list[str] = [template.parts[0]]
    fields: list[str] = []
    for name, part in zip(template.fields, template.parts[1:], strict=True):
        if name in constants:
            value = constants[name]
            parts[-1] += (html.escape(value, quote=True) if escape else value) + part
        else:
            fields.append(name)
            parts.append(part)
    pieces = [_piece(p) for p in parts[:-1]] + [qp_encode(parts[-1])]
    return _BodyPlan(tuple(pieces), tuple(fields))


def dkim_signer(config: Config) -> DkimSigner | None:
    """The signer for the configured DKIM key, or None when DKIM is off."""
    keys = (config.dkim_key_file, config.dkim_selector, config.dkim_domain)
    if not any(keys):
        return None
    if not all(keys):
        raise ConfigError("dkim_key_file, dkim_selector and dkim_domain must be set together")
    return DkimSigner(*keys)


def oversigned(present: list[str]) -> list[str]:
    """The h= list: every name of :data:`DKIM_HEADERS` once more than ``present`` has it."""
    return [n for n in DKIM_HEADERS for _ in range(present.count(n) + 1)]


class MessageFactory:
    """Everything per issue, precomputed; :meth:`build` makes one copy's bytes.

    ``test=True`` makes test copies: "[TEST] " subject, tokens for issue 0, random Message-IDs.
    """

    def __init__(
        self,
        issue: ComposedIssue,
        config: Config,
        *,
        test: bool = False,
        signer: DkimSigner | None = None,
    ) -> None:
        self.issue = issue
        self.test = test
        self._keys = config.secret_keys()
        self._token_issue = 0 if test else issue.meta.number
        self._base_url = config.base_url
        # RFC 8058 wants a mailto: as it is; add a subject only where the URI has none.
        mailto = config.unsubscribe_mailto
        self._mailto = mailto if "?" in mailto or not mailto else mailto + "?subject=unsubscribe"
        self._signer = signer
        self.web_url = f"{config.base_url}/issues/{quote(issue.meta.slug, safe='')}"
        self.envelope_from = smtp_address(config.sender)
        # VERP (bounce_address set): each real copy's envelope sender names its delivery.
        bounce = smtp_address(config.bounce_address) if config.bounce_address else ""
        local, _, domain = bounce.rpartition("@")
        self._verp = (f"{local}+", f"@{domain}") if bounce and not test else None
        from_address = smtp_address(config.from_address)
        self._msgid_domain = from_address.rpartition("@")[2]
        self.subject = ("[TEST] " if test else "") + issue.meta.subject

        boundary = "=_mailer_" + secrets.token_hex(12)  # "=_" never occurs in QP text
        static = [with_phrase("From", config.from_name, from_address)]
        names = ["From"]
        if config.reply_to:
            static.append(f"Reply-To: {smtp_address(config.reply_to)}\r\n".encode())
            names.append("Reply-To")
        static += [
            unstructured("Subject", self.subject),
            b"MIME-Version: 1.0\r\n",
            with_phrase("List-Id", config.name, config.list_id_domain),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            _QUIET_HEADERS,
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'.encode(),
        ]
        names += [
            "Subject",
            "MIME-Version",
            "List-Id",
            "List-Unsubscribe-Post",
            "Content-Type",
            # and in every copy (see build):
            "Date",
            "Message-ID",
            "To",
            "List-Unsubscribe",
        ]
        self._static_headers = b"".join(static)
        self.signed_headers = oversigned(names)
        part_head = (
            "Content-Type: text/{}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self._text_open = f"\r\n--{boundary}\r\n{part_head.format('plain')}".encode()
        self._html_open = f"\r\n--{boundary}\r\n{part_head.format('html')}".encode()
        self._close = f"\r\n--{boundary}--\r\n".encode()

        constants = {"web_url": self.web_url}
        self._text = _plan(issue.text, constants, escape=False)
        self._html = _plan(issue.html, constants, escape=True)
        self._date_second = -1
        self._date_header = b""
        # The body up to the first personal field is the same in every copy: hash it once.
        # (The body starts after the blank line, i.e. the CRLF that opens _text_open.)
        self._body_start = hashlib.sha256(self._text_open[2:] + self._text.pieces[0])

    def unsubscribe_url(self, recipient: Recipient) -> str:
        token = make_token(self._keys, recipient.uid, self._token_issue)
        return f"{self._base_url}/unsubscribe/{token}"

    def envelope_for(self, recipient: Recipient) -> str:
        """The MAIL FROM of ``recipient``'s copy: ``LOCAL+TOKEN@DOMAIN`` of bounce_address
        (see :func:`mailer.tokens.make_verp_token`), else :attr:`envelope_from`."""
        if self._verp is None:
            return self.envelope_from
        token = make_verp_token(self._keys, recipient.uid, self._token_issue)
        return self._verp[0] + token + self._verp[1]

    def message_id(self, recipient: Recipient) -> str:
        """Stable per issue and subscriber: a resent copy keeps it (so inboxes can de-dup),
        also after a key rotation (no key goes into it). A hash of the issue and the
        subscriber's 128-bit random uid: unguessable to anyone who has not got the copy."""
        if self.test:
            return make_msgid(domain=self._msgid_domain)
        digest = hashlib.sha256(
            f"mailer-message-id\0{self._token_issue}\0{recipient.uid}".encode()
        ).hexdigest()[:32]
        return f"<{self.issue.meta.number}.{digest}@{self._msgid_domain}>"

    @staticmethod
    def envelope_to(email: str) -> str:
        """The RCPT TO address for ``email`` (IDNA domain); InvalidAddress if it is none."""
        return smtp_address(email)

    def preferences_url(self, recipient: Recipient) -> str:
        """The footer's preferences link (``/preferences/TOKEN``: change the name, leave)."""
        token = make_preferences_token(self._keys, recipient.uid, self._token_issue)
        return f"{self._base_url}/preferences/{token}"

    def values(self, recipient: Recipient) -> dict[str, str]:
        """The personal fields for ``recipient`` (what ``ComposedIssue.personalise`` takes)."""
        return {
            "name": clean(recipient.name),
            "email": recipient.email,
            "unsubscribe_url": self.unsubscribe_url(recipient),
            "web_url": self.web_url,
            "preferences_url": self.preferences_url(recipient),
        }

    def build(
        self, recipient: Recipient, message_id: str | None = None, *, to: str | None = None
    ) -> bytes:
        """One copy as SMTP-ready bytes (CRLF, no dot-stuffing needed, <= 998 octets/line).

        ``to`` sends the copy personalised for ``recipient`` to another address (test sends).
        InvalidAddress when the address cannot be sent to.
        """
        address = smtp_address(to or recipient.email)
        values = self.values(recipient)
        unsubscribe = f"<{values['unsubscribe_url']}>"
        if self._mailto:
            unsubscribe += f",\r\n <{self._mailto}>"
        out = [
            self._date(),
            b"Message-ID: ",
            (message_id or self.message_id(recipient)).encode(),
            b"\r\n",
            with_phrase("To", values["name"], address),
            b"List-Unsubscribe: ",
            unsubscribe.encode(),
            b"\r\n",
            self._static_headers,
        ]
        head_end = len(out)
        out.append(self._text_open)
        self._fill(out, self._text, values, escape=False)
        out.append(self._html_open)
        self._fill(out, self._html, values, escape=True)
        out.append(self._close)
        if self._signer is not None:
            body_hash = self._body_start.copy()
            for piece in out[head_end + 2 :]:  # after _text_open and the first text piece
                body_hash.update(piece)
            head = b"".join(out[:head_end])
            out.insert(0, self._signer.signature(head, body_hash.digest(), self.signed_headers))
        return b"".join(out)

    def _fill(
        self, out: list[bytes], plan: _BodyPlan, values: dict[str, str], *, escape: bool
    ) -> None:
        pieces = plan.pieces
        out.append(pieces[0])
        for i, field_name in enumerate(plan.fields, 1):
            value = values[field_name]
            if escape:
                value = html.escape(value, quote=True)
            out.append(_piece(value))
            out.append(pieces[i])

    def _date(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._date_second:
            stamp = format_datetime(datetime.fromtimestamp(second, UTC))
            self._date_header = f"Date: {stamp}\r\n".encode()
            self._date_second = second
        return self._date_header
