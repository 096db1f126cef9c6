"""Header lines of a message: folded to 78 octets, RFC 2047-encoded when needed, IDNA domains.

What a user or a subscriber typed (a subject, a display name) goes out so that every client
shows it exactly as typed:

* Plain text (printable ASCII, no word too long for a line, no ``=?``) stays as it is,
  folded at spaces so a line stays within 78 octets (RFC 5322 2.1.1).
* Anything else is RFC 2047-encoded as a whole with :class:`email.header.Header`: non-ASCII
  text, a word too long to fold (a 2,000-character name would be a 2,000-octet line), and
  text holding ``=?``, which a client would otherwise decode as an encoded word of its own
  (``=?utf-8?b?...?=`` in a name must show as those characters, not as what they encode).

Addresses: domains go out as IDNA A-labels (``bücher.example`` -> ``xn--bcher-kva.example``)
in the envelope and the headers; a non-ASCII local part stays UTF-8 and needs a server that
offers SMTPUTF8 (RFC 6531; the transport checks). The ``idna`` package does the IDNA work.
"""

from __future__ import annotations

import re
import unicodedata
from email.header import Header
from email.utils import formataddr

import idna

from mailer.errors import InvalidAddress

MAX_LINE = 78  # RFC 5322's SHOULD; 998 is the MUST
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A plain address: no spaces, controls or specials in the local part (which may be UTF-8),
# an ASCII domain. ASCII ones (nearly all) go out as they are.
_ADDRESS = re.compile(r"^[^\s<>@\"\\,;:()\[\]\x00-\x1f\x7f]+@[A-Za-z0-9.\-\[\]:]+$")
# Text that needs no encoding: printable ASCII, short words, no "=?" (an encoded word's start).
_PLAIN = re.compile(r"^(?!.*=\?)(?:[!-~]{1,60}(?: |$))+$")
_SIMPLE_NAME = re.compile(r"^(?!.*=\?)[ -~]{1,60}$")


def clean(text: str) -> str:
    """``text`` with control characters (CR, LF, ...) turned into spaces, spaces collapsed."""
    if text.isprintable() and "  " not in text and text.strip() == text:
        return text  # clean already (the hot path: every copy's name)
    return " ".join(_CONTROL.sub(" ", text).split())


def smtp_address(address: str) -> str:
    """``address`` as the envelope and the headers carry it: its domain in A-labels.

    A non-ASCII local part is kept (UTF-8, NFC): such an address needs SMTPUTF8. Anything that
    cannot be an address, or could smuggle a header or an SMTP command, is InvalidAddress.
    """
    if address.isascii() and _ADDRESS.fullmatch(address):
        return address
    local, _, domain = address.rpartition("@")
    try:
        # IDNA 2008 with UTS 46 mapping, as browsers and mail clients do.
        ascii_domain = domain if domain.isascii() else idna.encode(domain, uts46=True).decode()
    except idna.IDNAError as exc:
        raise InvalidAddress(
            f"cannot send to {address!r}: its domain is not IDNA ({exc})"
        ) from None
    found = f"{unicodedata.normalize('NFC', local)}@{ascii_domain}"  # RFC 6532 3.1: NFC
    if not _ADDRESS.fullmatch(found):
        raise InvalidAddress(f"cannot send to {address!r}: not a plain address")
    return found


def unstructured(name: str, value: str) -> bytes:
    """``Name: value`` (e.g. Subject), CRLF-terminated."""
    value = clean(value)
    if not value or _PLAIN.match(value):
        return _fold(f"{name}:", value.split(" ") if value else []) + b"\r\n"
    return f"{name}: {_encoded(name, value)}\r\n".encode("ascii")


def with_phrase(name: str, phrase: str, angle: str) -> bytes:
    """``Name: phrase <angle>`` (From, To, List-Id), CRLF-terminated; ``angle`` is an address
    (A-labels; a UTF-8 local part goes out as UTF-8) or a list id, ``phrase`` may be empty."""
    phrase = clean(phrase)
    if not phrase:
        return f"{name}: {angle}\r\n".encode()
    if _SIMPLE_NAME.match(phrase):
        # formataddr quotes a phrase with specials ("Doe, Jane" -> "\"Doe, Jane\"").
        text = formataddr((phrase, "x@x"))[: -len(" <x@x>")]
        line = f"{name}: {text} <{angle}>"
        if len(line) <= MAX_LINE:
            return (line + "\r\n").encode()
        return f"{name}: {text}\r\n <{angle}>\r\n".encode()
    encoded = _encoded(name, phrase)
    last = encoded.rpartition("\n")[2]
    glue = " " if len(last) + len(angle) + 3 <= MAX_LINE else "\r\n "
    return f"{name}: {encoded}{glue}<{angle}>\r\n".encode()


def _encoded(name: str, text: str) -> str:
    """RFC 2047 encoded words (UTF-8), folded so each line fits, the first after ``Name: ``."""
    encoded: str = Header(text, "utf-8", maxlinelen=MAX_LINE, header_name=name).encode(
        linesep="\r\n"
    )
    return encoded


def _fold(start: str, words: list[str]) -> bytes:
    """``start`` and ``words`` joined by spaces, folded before a word that would pass 78."""
    lines: list[str] = []
    line = start
    for word in words:
        if len(line) + 1 + len(word) > MAX_LINE and line != start:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines).encode("ascii")
