"""Reading a report: what shape it has and what it says about each recipient.

The standard shapes are read with the standard library's ``email`` package, which already
splits them into fields:

* RFC 3464 delivery status notifications (``multipart/report; report-type=delivery-status``
  with a ``message/delivery-status`` part: one block per recipient with ``Action``,
  ``Status``, ``Diagnostic-Code``), also the RFC 6533 ``message/global-delivery-status``;
* RFC 5965 ARF feedback reports (``message/feedback-report`` with ``Feedback-Type``).

Everything else, the qmail, old Exim, Exchange, Yahoo ... text bounces, goes to flufl.bounce
(Mailman's detectors), which finds the failed addresses; the explanation next to each
address in the text then says hard, soft or policy (:mod:`mailer.bounces.codes`). RFC 3834
auto-replies (out of office) are recognised last, since real bounces carry
``Auto-Submitted: auto-replied`` too.
"""

from __future__ import annotations

import email
import email.parser
import logging
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

__all__ = ["Recipient", "Report", "field", "read_report"]

# flufl.bounce logs every detector it tries at INFO, and a detector that fails with a
# traceback at ERROR: we catch those and call the report unrecognised.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|autoreply|"
    r"auto:|abwesenheit|absence|r[ée]ponse automatique|respuesta autom[aá]tica|"
    r"risposta automatica|on vacation|away from (the|my) (office|desk)|i am (out|away))",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")
# A failure notice that no detector could read is for a person, not an auto-reply to drop.
_FAILURE_LOOK = re.compile(
    r"mailer-daemon|postmaster|undeliver|delivery (status|failure|has failed|problem|failed)|"
    r"mail error|failed delivery|"
    r"returned mail|could not be delivered|failure notice|non ?delivery|not delivered",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Recipient:
    """One recipient's block of a report."""

    address: str  # Final-Recipient (or Original-Recipient); "" when redacted or unknown
    action: str  # failed, delayed, delivered, relayed, expanded (lower case)
    status: str  # e.g. "5.1.1"; "" when the report gives none
    diagnostic: str  # the remote server's words, one line


@dataclass(frozen=True)
class Report:
    """A message from the bounce mailbox, read."""

    shape: str  # "dsn", "arf", "text" (a non-standard bounce), "auto-reply" or "none"
    message: Message
    recipients: tuple[Recipient, ...] = ()
    feedback_type: str = ""  # ARF: abuse, fraud, not-spam, auth-failure, ...
    reporter: str = ""  # Reporting-MTA, or the ARF's User-Agent / Reported-Domain


def field(message: Message, name: str) -> str:
    """A header as one plain line ("" if absent), whatever its encoding."""
    value = message.get(name)
    if value is None:
        return ""
    return _SPACE.sub(" ", str(value)).strip()


def one_line(text: str, limit: int = 500) -> str:
    return _SPACE.sub(" ", text).strip()[:limit]


def read_report(raw: bytes) -> Report:
    """What ``raw`` is. Never raises for a malformed message: it is then shape "none"."""
    message = email.message_from_bytes(raw)
    for reader in (_dsn, _arf, _text_bounce, _failure_notice, _auto_reply):
        try:
            found = reader(message)
        except Exception:  # a broken MIME structure or a detector tripping on it
            found = None
        if found is not None:
            return found
    return Report("none", message)


# --- RFC 3464 ------------------------------------------------------------------------------

_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")


def _dsn(message: Message) -> Report | None:
    part = next((p for p in message.walk() if p.get_content_type() in _STATUS_TYPES), None)
    if part is None:
        return None
    blocks = _blocks(part)
    if not blocks:
        return None
    reporter = field(blocks[0], "Reporting-MTA").partition(";")[2].strip()
    body = _first_text(message)
    recipients = tuple(
        _recipient(b, body) for b in blocks[1:] if b.get("Action") or b.get("Status")
    )
    if not recipients:
        # Some MTAs put everything into one block: take it as the recipient's.
        recipients = tuple(
            _recipient(b, body) for b in blocks if b.get("Action") or b.get("Status")
        )
    return Report("dsn", message, recipients, reporter=reporter) if recipients else None


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # message/global-delivery-status: the parser reads it as one message whose headers are
    # the first block and whose body holds the others; re-read the whole text as blocks.
    text = part.get_payload(decode=True) if not part.is_multipart() else None
    if text is None and isinstance(payload, list) and payload and isinstance(payload[0], Message):
        text = payload[0].as_bytes()
    if not isinstance(text, bytes):
        return []
    chunks = re.split(rb"\r?\n\s*\r?\n", text.strip())
    parser = email.parser.BytesHeaderParser()
    return [parser.parsebytes(chunk + b"\n") for chunk in chunks if chunk.strip()]


_FAILED = ("failed", "failure", "error")  # the last two: non-standard, seen in the wild


def _recipient(block: Message, body: str) -> Recipient:
    address = _typed(field(block, "Final-Recipient") or field(block, "Original-Recipient"))
    status = field(block, "Status")
    words = field(block, "Action").lower().split()
    action = words[0] if words else ""
    if not action:  # RFC 3464 requires it; a sloppy MTA left it out
        action = "failed" if status.startswith("5") else "delayed"
    action = "failed" if action in _FAILED else action
    diagnostic = field(block, "Diagnostic-Code")
    if ";" in diagnostic[:12]:
        diagnostic = diagnostic.partition(";")[2]
    if not diagnostic and action == "failed":
        # No Diagnostic-Code: the human-readable part often says why, next to the address.
        original = _typed(field(block, "Original-Recipient"))
        diagnostic = _near(body, original or address, limit=300) if body else ""
    return Recipient(address, action, status, one_line(diagnostic))


def _typed(value: str) -> str:
    """``rfc822; user@example.org`` -> ``user@example.org``."""
    address = value.partition(";")[2] if ";" in value else value
    return address.strip().strip("<>").lower()


# --- RFC 5965 ------------------------------------------------------------------------------


def _arf(message: Message) -> Report | None:
    part = next(
        (p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None
    )
    if part is None:
        return None
    payload = part.get_payload()
    fields = payload[0] if isinstance(payload, list) and payload else part
    if not isinstance(fields, Message):
        return None
    feedback_type = field(fields, "Feedback-Type").lower()
    reporter = field(fields, "Reported-Domain") or field(fields, "User-Agent")
    rcpt = field(fields, "Original-Rcpt-To").strip("<>").lower()
    recipient = Recipient(rcpt, "complained", feedback_type, one_line(reporter))
    return Report("arf", message, (recipient,), feedback_type=feedback_type, reporter=reporter)


# --- the rest ------------------------------------------------------------------------------


def _text_bounce(message: Message) -> Report | None:
    temporary, permanent = all_failures(message)
    if not temporary and not permanent:
        return None
    body = _first_text(message)
    found = [(a, "failed") for a in sorted(permanent)]
    found += [(a, "delayed") for a in sorted(temporary - permanent)]
    recipients = tuple(
        Recipient(_address(a), action, "", _near(body, _address(a))) for a, action in found
    )
    return Report("text", message, recipients)


def _address(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.strip().strip("<>").lower()


def _first_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload[:65536].decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _near(body: str, address: str, limit: int = 400) -> str:
    """The explanation around ``address`` in a text bounce: the lines after it (qmail,
    Exim), or the line it is on."""
    at = body.lower().find(address) if address else -1
    if at < 0:
        return one_line(body[:limit])
    start = body.rfind("\n", 0, at) + 1
    return one_line(body[start : at + len(address) + limit])


def _failure_notice(message: Message) -> Report | None:
    """A failure notice that names no address a detector could find ("Mail could not be
    delivered ... mailbox space not enough"): the proof in it still says whose copy it was;
    its words say why."""
    if not _FAILURE_LOOK.search(field(message, "From") + " " + field(message, "Subject")):
        return None
    body = _first_text(message)
    return Report("text", message, (Recipient("", "failed", "", one_line(body[:600])),))


def _auto_reply(message: Message) -> Report | None:
    if _FAILURE_LOOK.search(field(message, "From") + " " + field(message, "Subject")):
        return None
    auto = field(message, "Auto-Submitted").lower()
    if (auto and auto != "no") or message.get("X-Autoreply") or message.get("X-Autorespond"):
        return Report("auto-reply", message)
    if field(message, "Precedence").lower() == "auto_reply":
        return Report("auto-reply", message)
    if _AUTO_SUBJECT.match(field(message, "Subject")):
        return Report("auto-reply", message)
    return None
