"""Unsubscribe tokens: opaque, unforgeable, stable across restarts and key rotation.

A token names one subscriber and the issue whose link carried it::

    base64url( version:1 | subscriber uid:16 | issue number:4 | mac:16 )   -> 50 characters

* The subscriber uid is 128 random bits stored with the subscriber (``Subscriber.uid``): it
  reveals neither the address nor a row id, and alone is unguessable.
* The mac is HMAC-SHA256 over the rest, truncated to 128 bits, under the current secret key,
  so a token cannot be made for a uid without the key, nor moved to another issue.
* Verification tries every configured key (current first), in constant time, so rotating the
  key does not break links already in inboxes: put the new key on the first line of the
  secret file and keep the old one below it for as long as old issues' links must work.

The same keys sign the sign-up feature's values, each under its own MAC purpose (a token
of one kind is never valid as another): preferences links (the unsubscribe token's layout),
confirmation links (a random nonce, stored only hashed) and the sign-up form's timestamp
stamps (:class:`FormStamp`). VERP tokens (the envelope sender of each copy) are below.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from mailer.errors import TokenError

_VERSION = 1
_UID_BYTES = 16
_MAC_BYTES = 16
_LAYOUT = struct.Struct(">B16sI")
TOKEN_LENGTH = 50
# The URL-safe alphabet only, exactly TOKEN_LENGTH long: the decoder alone would also take
# the standard alphabet's + and / (and skip what it does not know).
_CANONICAL_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")


def new_uid() -> str:
    """A fresh subscriber uid: 128 random bits as 32 hex digits."""
    return secrets.token_hex(_UID_BYTES)


@dataclass(frozen=True)
class TokenClaims:
    subscriber_uid: str
    issue_number: int


_UNSUBSCRIBE = b"mailer-unsubscribe\0"


def _mac(key: bytes, purpose: bytes, body: bytes, size: int = _MAC_BYTES) -> bytes:
    """HMAC-SHA256 of ``body`` under ``purpose`` (each kind of token its own), cut to ``size``."""
    return hmac.new(key, purpose + body, hashlib.sha256).digest()[:size]


def _signed_by_any(keys: Sequence[bytes], purpose: bytes, body: bytes, mac: bytes) -> bool:
    """Whether one of ``keys`` signed ``body``: every key is tried, without stopping early, so
    timing says nothing about which (rotation)."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(_mac(key, purpose, body, len(mac)), mac)
    return ok


def _uid_bytes(subscriber_uid: str, issue_number: int) -> bytes:
    """The 16 bytes of a subscriber uid, after checking it and the issue number's range."""
    try:
        uid = bytes.fromhex(subscriber_uid)
    except ValueError:
        raise TokenError("subscriber uid is not hex") from None
    if len(uid) != _UID_BYTES or not 0 <= issue_number < 2**32:
        raise TokenError("subscriber uid or issue number out of range")
    return uid


def make_token(keys: Sequence[bytes], subscriber_uid: str, issue_number: int) -> str:
    """Sign a token for ``subscriber_uid`` and ``issue_number`` with the current key."""
    if not keys:
        raise TokenError("no secret key configured")
    body = _LAYOUT.pack(_VERSION, _uid_bytes(subscriber_uid, issue_number), issue_number)
    return _encode(body + _mac(keys[0], _UNSUBSCRIBE, body))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_token(keys: Sequence[bytes], token: str) -> TokenClaims:
    """Check a token against every key; raise TokenError (one message for all failures)."""
    invalid = TokenError("invalid unsubscribe token")
    if not _CANONICAL_SHAPE.fullmatch(token):
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        raise invalid from None
    # 50 characters carry 300 bits for 296: the last one's 4 spare bits are ignored by the
    # decoder, so 15 other spellings would decode alike. Only the canonical one is a token.
    if len(raw) != _LAYOUT.size + _MAC_BYTES or _encode(raw) != token:
        raise invalid
    body, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    ok = _signed_by_any(keys, _UNSUBSCRIBE, body, mac)
    version, uid, issue_number = _LAYOUT.unpack(body)
    if not ok or version != _VERSION:
        raise invalid
    return TokenClaims(subscriber_uid=uid.hex(), issue_number=issue_number)


# --- VERP tokens: the envelope sender of each copy -----------------------------------------
#
# ``bounces+TOKEN@domain``: a bounce comes back to the address a copy was sent from, so the
# token in it says which delivery failed. Layout, 25 bytes, lowercase base32 (40 characters):
#
#     version:1 | subscriber uid prefix:8 | issue number:4 | mac:12
#
# * Lowercase base32 (a-z, 2-7) survives MTAs that case-fold local parts; 25 bytes are 200
#   bits, exactly 40 characters with no padding and no spare bits, so each token has one
#   spelling (a case-folded one is read as the same token, nothing else is).
# * 40 characters keep ``bounces+TOKEN`` well inside a local part's 64 octets.
# * The first 64 bits of the subscriber uid (random, so no address and no row id) are enough
#   to find the subscriber; the store refuses a prefix that two subscribers share.
# * The mac (HMAC-SHA256 under the current key, 96 bits) has its own domain tag, so neither
#   token can be turned into the other; every key is tried, in constant time (rotation).

_VERP_VERSION = 1
VERP_UID_PREFIX_BYTES = 8
_VERP_MAC_BYTES = 12
_VERP_LAYOUT = struct.Struct(">B8sI")
VERP_TOKEN_LENGTH = 40


@dataclass(frozen=True)
class VerpClaims:
    """What a valid VERP token names: a uid prefix (16 hex digits) and an issue number."""

    uid_prefix: str
    issue_number: int


_VERP = b"mailer-verp\0"


def make_verp_token(keys: Sequence[bytes], subscriber_uid: str, issue_number: int) -> str:
    """The VERP token of ``subscriber_uid``'s copy of issue ``issue_number``."""
    if not keys:
        raise TokenError("no secret key configured")
    uid = _uid_bytes(subscriber_uid, issue_number)
    body = _VERP_LAYOUT.pack(_VERP_VERSION, uid[:VERP_UID_PREFIX_BYTES], issue_number)
    raw = body + _mac(keys[0], _VERP, body, _VERP_MAC_BYTES)
    return base64.b32encode(raw).decode("ascii").lower()


def read_verp_token(keys: Sequence[bytes], token: str) -> VerpClaims:
    """Check a VERP token (in any letter case) against every key; raise TokenError."""
    invalid = TokenError("invalid VERP token")
    if len(token) != VERP_TOKEN_LENGTH or not token.isascii() or not token.isalnum():
        raise invalid
    try:
        raw = base64.b32decode(token.upper())
    except (binascii.Error, ValueError):
        raise invalid from None
    body, mac = raw[: _VERP_LAYOUT.size], raw[_VERP_LAYOUT.size :]
    ok = _signed_by_any(keys, _VERP, body, mac)
    version, prefix, issue_number = _VERP_LAYOUT.unpack(body)
    if not ok or version != _VERP_VERSION:
        raise invalid
    return VerpClaims(uid_prefix=prefix.hex(), issue_number=issue_number)


# --- other signed values: preferences links, sign-up links, form stamps ------------------
#
# The same keys and rotation rule as unsubscribe tokens (sign with keys[0], verify with every
# key, only the canonical encoding), each under its own MAC purpose, so that no token of one
# kind is ever a valid token of another.

_PREFERENCES = b"mailer-preferences\0"
_SIGNUP = b"mailer-signup\0"
_STAMP = b"mailer-form-stamp\0"
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


def _seal(keys: Sequence[bytes], purpose: bytes, body: bytes) -> str:
    if not keys:
        raise TokenError("no secret key configured")
    return _encode(body + _mac(keys[0], purpose, body))


def _open(keys: Sequence[bytes], purpose: bytes, token: str, sizes: range) -> bytes | None:
    """The body of a sealed ``token`` whose raw length is in ``sizes``; None when malformed,
    not canonical or not signed by any of ``keys``."""
    if not _URLSAFE.fullmatch(token) or len(token) > 4 * sizes.stop // 3 + 4:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) not in sizes or _encode(raw) != token:
        return None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    return body if _signed_by_any(keys, purpose, body, mac) else None


def make_preferences_token(keys: Sequence[bytes], subscriber_uid: str, issue_number: int) -> str:
    """The token of a preferences link (``/preferences/TOKEN``): as an unsubscribe token
    (same layout and length), under another MAC purpose."""
    uid = _uid_bytes(subscriber_uid, issue_number)
    return _seal(keys, _PREFERENCES, _LAYOUT.pack(_VERSION, uid, issue_number))


def read_preferences_token(keys: Sequence[bytes], token: str) -> TokenClaims:
    size = _LAYOUT.size + _MAC_BYTES
    body = _open(keys, _PREFERENCES, token, range(size, size + 1))
    if body is None or body[0] != _VERSION:
        raise TokenError("invalid preferences token")
    _, uid, issue_number = _LAYOUT.unpack(body)
    return TokenClaims(subscriber_uid=uid.hex(), issue_number=issue_number)


_NONCE_BYTES = 16


def new_signup_nonce() -> bytes:
    """128 random bits naming one confirmation email of a sign-up."""
    return secrets.token_bytes(_NONCE_BYTES)


def signup_lookup_hash(nonce: bytes) -> str:
    """What the database keeps of a sign-up link: sha256 hex of its nonce (never the nonce
    once the email is sent, so neither the database nor a backup holds a working link)."""
    return hashlib.sha256(b"mailer-signup-lookup\0" + nonce).hexdigest()


def make_signup_token(keys: Sequence[bytes], nonce: bytes) -> str:
    """The token of a confirmation link (``/confirm/TOKEN``): the nonce, signed."""
    if len(nonce) != _NONCE_BYTES:
        raise TokenError("sign-up nonce out of range")
    return _seal(keys, _SIGNUP, bytes([_VERSION]) + nonce)


def read_signup_token(keys: Sequence[bytes], token: str) -> bytes:
    """The nonce of a confirmation link's token; TokenError when malformed or forged (a
    forged token costs no database query)."""
    size = 1 + _NONCE_BYTES + _MAC_BYTES
    body = _open(keys, _SIGNUP, token, range(size, size + 1))
    if body is None or body[0] != _VERSION:
        raise TokenError("invalid sign-up token")
    return body[1:]


@dataclass(frozen=True)
class FormStamp:
    """What the sign-up form signs into a hidden field when it is served.

    ``kind`` is ``form`` (the blank /subscribe form) or ``again`` (the page asking to press
    Subscribe once more, fields already filled); ``consent_hash`` is the sha256 hex of the
    consent text the page showed; ``source`` is where the form was: a path of this site
    (``/subscribe``) or the origin of the site that embedded it.
    """

    issued_at: int  # Unix seconds
    kind: str
    consent_hash: str
    source: str


_STAMP_KINDS = ("form", "again")
_STAMP_HEAD = struct.Struct(">BBQ32s")
MAX_STAMP_SOURCE = 200  # bytes of UTF-8


def make_form_stamp(keys: Sequence[bytes], stamp: FormStamp) -> str:
    source = stamp.source.encode("utf-8")
    if stamp.kind not in _STAMP_KINDS or len(source) > MAX_STAMP_SOURCE:
        raise TokenError("form stamp out of range")
    head = _STAMP_HEAD.pack(
        _VERSION, _STAMP_KINDS.index(stamp.kind), stamp.issued_at, bytes.fromhex(stamp.consent_hash)
    )
    return _seal(keys, _STAMP, head + source)


def read_form_stamp(keys: Sequence[bytes], text: str) -> FormStamp:
    """The stamp in a submitted form; TokenError when malformed or forged."""
    low = _STAMP_HEAD.size + _MAC_BYTES
    body = _open(keys, _STAMP, text, range(low, low + MAX_STAMP_SOURCE + 1))
    if body is None:
        raise TokenError("invalid form stamp")
    version, kind, issued_at, consent = _STAMP_HEAD.unpack(body[: _STAMP_HEAD.size])
    try:
        source = body[_STAMP_HEAD.size :].decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("invalid form stamp") from None
    if version != _VERSION or kind >= len(_STAMP_KINDS):
        raise TokenError("invalid form stamp")
    return FormStamp(issued_at, _STAMP_KINDS[kind], consent.hex(), source)
