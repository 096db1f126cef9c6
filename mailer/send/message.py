"""Building one personalised message per recipient, as bytes, fast.

Everything that is the same for every copy is encoded once per issue in
:class:`MessageFactory`: the constant headers, and the quoted-printable text of both bodies
cut at their slots. Quoted-printable lets the pieces be encoded separately: each piece ends
with a soft line break (``=\\r\\n``), which decodes to nothing, so

    qp(part0) =CRLF qp(value1) =CRLF qp(part1) ...   decodes to   part0 value1 part1 ...

exactly the filled template. Per recipient only the few small values (name, address,
unsubscribe URL) are encoded and the pieces joined: no ``email.message`` object, no MJML, no
premailer. Lines stay under 78 octets (``binascii.b2a_qp``), every line ends in CRLF, and no
line starts with ``.`` (written ``=2E``), so the bytes go to SMTP ``DATA`` as they are.

With DKIM on, the body hash is fed from the same pieces (the body up to the first personal
field is hashed once per issue) and :mod:`mailer.send.dkim_signing` signs the header block.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import html
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.utils import format_datetime, formataddr, make_msgid

from mailer.compose.model import ComposedIssue, PersonalTemplate
from mailer.config import Config
from mailer.errors import ConfigError, InvalidAddress
from mailer.send.dkim_signing import DkimSigner
from mailer.send.ports import Recipient
from mailer.tokens import make_token, make_verp_token

# The headers a DKIM signature must cover (dkimpy's default omits List-Unsubscribe-Post).
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
_FOLD = policy.SMTP.clone(max_line_length=78, refold_source="all")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ADDRESS = re.compile(r"^[^\s<>@\"\\,;:()\[\]\x00-\x1f\x7f]+@[A-Za-z0-9.\-\[\]:]+$")
_SIMPLE_NAME = re.compile(r"^[ -~]{1,60}$")
_SOFT_BREAK = b"=\r\n"


def qp_encode(text: str) -> bytes:
    """Quoted-printable with CRLF line ends and no line starting with a dot."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False)
    encoded = encoded.replace(b"\n", b"\r\n")
    if encoded.startswith(b"."):
        encoded = b"=2E" + encoded[1:]
    return encoded.replace(b"\r\n.", b"\r\n=2E")


def _piece(text: str) -> bytes:
    """A QP piece that joins to what follows without adding anything (soft break)."""
    return qp_encode(text) + _SOFT_BREAK if text else b""


def _header(name: str, value: str) -> bytes:
    """A header line, CRLF-terminated: RFC 2047-encoded and folded when not ASCII."""
    value = clean_name(value)  # CR, LF and other controls never reach a header
    if value.isascii() and len(name) + len(value) < 990:
        return f"{name}: {value}\r\n".encode("ascii")
    folded: str = _FOLD.fold(name, value)
    return folded.encode("ascii")


def clean_name(name: str) -> str:
    """A display name with control characters (CR, LF, ...) turned into spaces."""
    return " ".join(_CONTROL.sub(" ", name).split())


def check_address(address: str) -> str:
    """The address if it can go into a header and an SMTP command as is; else InvalidAddress."""
    if not _ADDRESS.match(address) or not address.isascii():
        raise InvalidAddress(f"cannot send to {address!r}: not a plain ASCII address")
    return address


def address_header(name: str, address: str) -> str:
    """``Name <address>`` for a header value (caller folds and encodes)."""
    name = clean_name(name)
    if not name:
        return address
    return str(Address(display_name=name, addr_spec=address))


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
        self._mailto = config.unsubscribe_mailto
        self._signer = signer
        self.web_url = f"{config.base_url}/issues/{issue.meta.slug}"
        self.envelope_from = config.sender
        # VERP (bounce_address set): each real copy's envelope sender names its delivery.
        local, _, domain = config.bounce_address.rpartition("@")
        self._verp = (f"{local}+", f"@{domain}") if config.bounce_address and not test else None
        self._msgid_domain = config.from_address.rpartition("@")[2]
        self.subject = ("[TEST] " if test else "") + issue.meta.subject

        boundary = "=_mailer_" + secrets.token_hex(12)  # "=_" never occurs in QP text
        static = [
            _header("From", address_header(config.from_name, config.from_address)),
        ]
        if config.reply_to:
            static.append(_header("Reply-To", config.reply_to))
        static += [
            _header("Subject", self.subject),
            b"MIME-Version: 1.0\r\n",
            _header("List-Id", config.list_id),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode(),
        ]
        self._static_headers = b"".join(static)
        self._signed_headers = [h for h in DKIM_HEADERS if config.reply_to or h != "Reply-To"]
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
        """Stable per issue and subscriber (a resent copy keeps it, so inboxes can de-dup)."""
        if self.test:
            return make_msgid(domain=self._msgid_domain)
        digest = hmac.new(
            self._keys[0],
            f"message-id\0{self._token_issue}\0{recipient.uid}".encode(),
            hashlib.sha256,
        ).hexdigest()[:32]
        return f"<{self.issue.meta.number}.{digest}@{self._msgid_domain}>"

    def values(self, recipient: Recipient) -> dict[str, str]:
        """The personal fields for ``recipient`` (what ``ComposedIssue.personalise`` takes)."""
        return {
            "name": clean_name(recipient.name),
            "email": recipient.email,
            "unsubscribe_url": self.unsubscribe_url(recipient),
            "web_url": self.web_url,
        }

    def build(
        self, recipient: Recipient, message_id: str | None = None, *, to: str | None = None
    ) -> bytes:
        """One copy as SMTP-ready bytes (CRLF, no dot-stuffing needed, <= 998 octets/line).

        ``to`` sends the copy personalised for ``recipient`` to another address (test sends).
        """
        address = check_address(to or recipient.email)
        values = self.values(recipient)
        url = values["unsubscribe_url"]
        unsubscribe = f"<{url}>"
        if self._mailto:
            unsubscribe += f",\r\n <{self._mailto}?subject=unsubscribe>"
        name = values["name"]
        if not name:
            to_header = b"To: " + address.encode() + b"\r\n"
        elif _SIMPLE_NAME.match(name):
            to_header = b"To: " + formataddr((name, address)).encode() + b"\r\n"
        else:
            to_header = _header("To", address_header(name, address))
        out = [
            self._date(),
            b"Message-ID: ",
            (message_id or self.message_id(recipient)).encode(),
            b"\r\n",
            to_header,
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
            out.insert(0, self._signer.signature(head, body_hash.digest(), self._signed_headers))
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
