"""Address rules: syntax-checked with email-validator (no DNS), normalised, compared by key.

``normalise_address`` returns the form stored and sent to (domain lower-cased and IDNA-
decoded, local part as given) and its ``email_key`` (lower-cased: uniqueness is case-
insensitive). CR, LF and NUL are refused in addresses and names: they would let a value
break out of a mail header; so are the other C0 and C1 control characters (and DEL) in names,
which would rewrite the terminal of whoever lists them (``ESC ]0;...``); attribute values
may hold tabs and line breaks (multi-line notes), no other control character
(:func:`control_character`).

email-validator costs ~25 µs a call, too slow for bulk imports, so plain ASCII dot-atom
local parts (almost every real address) take a fast path: the local part is checked by a
regex that accepts only what email-validator accepts unchanged, and the domain is validated
by email-validator once per distinct domain (cached). Anything else goes through
email-validator whole. tests/store/test_addresses.py checks both paths agree.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email

from mailer.errors import InvalidAddress

MAX_NAME = 200
_FORBIDDEN = re.compile(r"[\r\n\0]")
# Unicode category Cc: C0 (U+0000-U+001F), DEL, C1 (U+0080-U+009F).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# RFC 5322 dot-atom of atext characters, the only local parts email-validator passes as is.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_MAX_LOCAL = 64
_MAX_ADDRESS = 254


class Address(NamedTuple):
    email: str  # normalised, as stored and sent to
    key: str  # lower-cased: the unique key


def normalise_address(raw: str) -> Address:
    """Validate ``raw`` and return its normalised form and key; InvalidAddress if bad."""
    text = raw.strip()
    if _FORBIDDEN.search(text):
        raise InvalidAddress("email: contains a line break or NUL character")
    if not text:
        raise InvalidAddress("email: is empty")
    local, at, domain = text.rpartition("@")
    if at and len(local) <= _MAX_LOCAL and _DOT_ATOM.fullmatch(local):
        normal_domain = _domain(domain)
        if normal_domain is not None:
            email = f"{local}@{normal_domain}"
            if len(email) <= _MAX_ADDRESS:
                return Address(email, email.lower())
    return _slow(text)


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normalised domain if email-validator accepts it after a plain local part."""
    try:
        return str(validate_email(f"a@{domain}", check_deliverability=False).domain)
    except EmailNotValidError:
        return None  # let the slow path produce the message for the whole address


def _slow(text: str) -> Address:
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"email: {text!r}: {exc}") from None
    email = str(result.normalized)
    return Address(email, email.lower())


def lookup_key(raw: str) -> str:
    """The key to find the subscriber with address ``raw`` by (as :func:`normalise_address`
    makes it: ``Jane@XN--BCHER-KVA.de`` finds ``jane@bücher.de``); "" (no subscriber's key)
    when ``raw`` is not a valid address."""
    try:
        return normalise_address(raw).key
    except InvalidAddress:
        return ""


def normalise_name(raw: str | None) -> str:
    """A display name: trimmed, at most 200 characters, no control character."""
    name = (raw or "").strip()
    control = _CONTROL.search(name)  # one search: names are checked once per imported row
    if control:
        if _FORBIDDEN.search(name):
            raise InvalidAddress("name: contains a line break or NUL character")
        raise InvalidAddress(f"name: contains a control character (U+{ord(control.group()):04X})")
    if len(name) > MAX_NAME:
        raise InvalidAddress(f"name: longer than {MAX_NAME} characters")
    return name


def address_hash(email_key: str) -> str:
    """The one-way hash kept for a forgotten address (sha256 hex of the key)."""
    return hashlib.sha256(email_key.encode("utf-8")).hexdigest()


def control_character(text: str, *, lines: bool = False) -> str | None:
    """The first C0/C1 control character (or DEL) in ``text``, as ``U+001B``; None if there
    is none. ``lines``: tab, CR and LF are allowed (multi-line attribute values)."""
    found = (_CONTROL_BUT_LINES if lines else _CONTROL).search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
