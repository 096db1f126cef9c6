"""Proof that a report answers a copy we sent: signed tokens and Message-IDs in it.

A report counts only with proof (README "Bounces"); an address alone proves nothing, since
anyone can mail the bounce address a report naming anyone. The proof is one of:

* a valid VERP token in the address the report was delivered to (``Delivered-To``,
  ``X-Original-To`` ... of the report: Postfix's local delivery adds them);
* in the returned message or headers the report carries (a ``message/rfc822`` or
  ``text/rfc822-headers`` part, an ARF's fields, or the text of a plain bounce): our VERP
  Return-Path (or an ARF's ``Original-Mail-From``), our List-Unsubscribe token, or a
  Message-ID of ours (looked up in the ledger).

Tokens are checked here (their MAC, under every key); the store then finds the delivery.
The report's own headers other than the delivered-to ones are not looked at: a report's
``In-Reply-To`` or ``Subject`` is the sender's to choose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from email.message import Message

from mailer.bounces.ports import Claim
from mailer.errors import TokenError
from mailer.tokens import VERP_TOKEN_LENGTH, read_token, read_verp_token

__all__ = ["DELIVERED_TO", "find_claims"]

DELIVERED_TO = (
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "X-Delivered-To",
    "X-Original-Recipient",
    "To",
)
_VERP = re.compile(rf"\+([a-z2-7]{{{VERP_TOKEN_LENGTH}}})@", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(r"/unsubscribe/([A-Za-z0-9_-]{50})(?![A-Za-z0-9_-])")
# mailer.send.message: <NUMBER.32-hex-digits@domain>
_MESSAGE_ID = re.compile(r"<\d{1,10}\.[0-9a-f]{32}@[A-Za-z0-9.-]{1,253}>")
_SCAN_LIMIT = 512 * 1024  # of each part: a returned message is small, an attachment is not


def find_claims(message: Message, keys: Sequence[bytes]) -> list[Claim]:
    """Every distinct valid claim in ``message``, the delivered-to address's first."""
    claims: list[Claim] = []
    for name in DELIVERED_TO:
        for value in message.get_all(name) or ():
            claims += _verp_claims(str(value), keys, "verp")
    for text in _carried(message):
        claims += _verp_claims(text, keys, "return-path")
        for token in _UNSUBSCRIBE.findall(text):
            try:
                found = read_token(keys, token)
            except TokenError:
                continue
            claims.append(Claim("unsubscribe", found.subscriber_uid, found.issue_number))
        claims += [Claim("message-id", message_id=m) for m in _MESSAGE_ID.findall(text)]
    unique: dict[tuple[str, int, str], Claim] = {}
    for claim in claims:
        unique.setdefault((claim.uid, claim.issue_number, claim.message_id), claim)
    return list(unique.values())


def _verp_claims(text: str, keys: Sequence[bytes], how: str) -> list[Claim]:
    found = []
    for token in _VERP.findall(text):
        try:
            verp = read_verp_token(keys, token)
        except TokenError:
            continue
        found.append(Claim(how, verp.uid_prefix, verp.issue_number))
    return found


def _carried(message: Message) -> Iterator[str]:
    """The text a report carries: every part's headers but the report's own, and every
    text-like part's decoded body (the report's own body when it is a single part)."""
    for part in message.walk():
        if part is not message:
            yield "\n".join(f"{k}: {v}" for k, v in part.items())
        if part.is_multipart():
            continue
        maintype = part.get_content_maintype()
        if maintype not in ("text", "message") and part is not message:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield payload[:_SCAN_LIMIT].decode("utf-8", "replace")
