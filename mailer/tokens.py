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


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"mailer-unsubscribe\0" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(keys: Sequence[bytes], subscriber_uid: str, issue_number: int) -> str:
    """Sign a token for ``subscriber_uid`` and ``issue_number`` with the current key."""
    if not keys:
        raise TokenError("no secret key configured")
    try:
        uid = bytes.fromhex(subscriber_uid)
    except ValueError:
        raise TokenError("subscriber uid is not hex") from None
    if len(uid) != _UID_BYTES or not 0 <= issue_number < 2**32:
        raise TokenError("subscriber uid or issue number out of range")
    body = _LAYOUT.pack(_VERSION, uid, issue_number)
    return _encode(body + _mac(keys[0], body))


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
    # Compare against every key, without stopping early, so timing says nothing about which.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(_mac(key, body), mac)
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


def _verp_mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"mailer-verp\0" + body, hashlib.sha256).digest()[:_VERP_MAC_BYTES]


def make_verp_token(keys: Sequence[bytes], subscriber_uid: str, issue_number: int) -> str:
    """The VERP token of ``subscriber_uid``'s copy of issue ``issue_number``."""
    if not keys:
        raise TokenError("no secret key configured")
    try:
        uid = bytes.fromhex(subscriber_uid)
    except ValueError:
        raise TokenError("subscriber uid is not hex") from None
    if len(uid) != _UID_BYTES or not 0 <= issue_number < 2**32:
        raise TokenError("subscriber uid or issue number out of range")
    body = _VERP_LAYOUT.pack(_VERP_VERSION, uid[:VERP_UID_PREFIX_BYTES], issue_number)
    raw = body + _verp_mac(keys[0], body)
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
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(_verp_mac(key, body), mac)
    version, prefix, issue_number = _VERP_LAYOUT.unpack(body)
    if not ok or version != _VERP_VERSION:
        raise invalid
    return VerpClaims(uid_prefix=prefix.hex(), issue_number=issue_number)
