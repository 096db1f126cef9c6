"""Handling reports: read, prove, classify, record, then move; and the summary of a run.

For each message of a mailbox:

1. its key (a hash of its bytes, line ends aside): a report recorded before is only moved
   again (a move that failed last time), so running twice changes nothing;
2. :func:`~mailer.bounces.parse.read_report` says what it is;
3. auto-replies, delay notices, ARF reports other than ``abuse`` are *ignored*; a failure
   report or a complaint needs proof (:mod:`mailer.bounces.evidence`) naming exactly one
   delivery, else it is *unrecognised* and changes nobody;
4. the ledger records it and applies the rules (:func:`mailer.bounces.ports.decide`), in one
   transaction, and only then is the message moved: to the unrecognised folder for a
   person to look at, or to the processed one. Nothing is ever deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from mailer.bounces.codes import classify
from mailer.bounces.evidence import find_claims
from mailer.bounces.maildir import Item
from mailer.bounces.parse import Recipient, Report, one_line, read_report
from mailer.bounces.parse import field as header
from mailer.bounces.ports import Applied, BounceLedger, Claim, DeliveryRef, Kind, Verdict

__all__ = ["Mailbox", "Summary", "classify_report", "judge", "process_mailbox", "report_key"]

# Shown to the operator as the sender's delivery problems (never the subscriber's fault).
_POLICY_SHOWN = 20


class Mailbox(Protocol):
    source: str

    def describe(self) -> str: ...

    def messages(self) -> Iterator[Item]: ...

    def move(self, item: Item, kind: Kind) -> bool: ...

    def close(self) -> None: ...


@dataclass
class Summary:
    """What one run over a mailbox did."""

    mailbox: str = ""
    counts: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))
    already: int = 0  # recorded by an earlier run (moved now if the move had failed)
    repeats: int = 0  # proven and classified, but their delivery already had such a report
    status_changes: dict[str, int] = field(default_factory=dict)  # new status -> subscribers
    policy: list[str] = field(default_factory=list)  # the sender's problems, for the operator

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.already

    def add(self, applied: Applied, verdict: Verdict) -> None:
        self.counts[applied.kind] += 1
        if applied.new_status:
            self.status_changes[applied.new_status] = (
                self.status_changes.get(applied.new_status, 0) + 1
            )
        if applied.kind is Kind.POLICY and len(self.policy) < _POLICY_SHOWN:
            self.policy.append(f"{verdict.status} {verdict.diagnostic}".strip())
        if not applied.counted and applied.kind not in (Kind.IGNORED, Kind.UNRECOGNISED):
            self.repeats += 1


def report_key(raw: bytes) -> str:
    """The same for a report's copies in a Maildir (LF) and over IMAP (CRLF)."""
    return "sha256:" + hashlib.sha256(raw.replace(b"\r\n", b"\n").rstrip(b"\n")).hexdigest()


def process_mailbox(mailbox: Mailbox, ledger: BounceLedger, keys: Sequence[bytes]) -> Summary:
    """Handle every message of ``mailbox`` once (see the module's docstring)."""
    summary = Summary(mailbox=mailbox.describe())
    for item in mailbox.messages():
        key = report_key(item.raw)
        earlier = ledger.processed(key)
        if earlier is not None:
            summary.already += 1
            mailbox.move(item, earlier)
            continue
        verdict, delivery = judge(item.raw, key, ledger, keys, mailbox.source)
        applied = ledger.record(verdict, delivery)
        summary.add(applied, verdict)
        mailbox.move(item, applied.kind)
    return summary


def judge(
    raw: bytes, key: str, ledger: BounceLedger, keys: Sequence[bytes], source: str
) -> tuple[Verdict, DeliveryRef | None]:
    """What the report ``raw`` is and which delivery it is about (None: nobody's)."""
    try:
        report = read_report(raw)
        message_id = header(report.message, "Message-ID")[:255]
        what = classify_report(report)
    except Exception:  # the parser must never stop a run: a person looks at it instead
        return Verdict(key, Kind.UNRECOGNISED, "none", note="cannot be read", source=source), None
    kind, status, diagnostic, note = what
    verdict = Verdict(key, kind, report.shape, status, diagnostic, message_id, note, source)
    if kind in (Kind.IGNORED, Kind.UNRECOGNISED):
        return verdict, None
    claims = find_claims(report.message, keys)
    if not claims:
        return _unrecognised(verdict, "proves nothing: no token or Message-ID of ours"), None
    # A signed token names the delivery; a Message-ID is looked up only without one.
    signed = [c for c in claims if not c.message_id]
    found = ledger.resolve(signed or claims)
    deliveries = {ref.delivery_id: ref for ref in found if ref is not None}
    if len(deliveries) > 1:
        return _unrecognised(verdict, "names several deliveries"), None
    if not deliveries:
        # Signed by us, but no such delivery: a test copy, or an erased subscriber.
        note = "signed by us, but no such delivery (a test copy?): " + _hows(claims)
        return replace(verdict, kind=Kind.IGNORED, note=note), None
    (delivery,) = deliveries.values()
    return replace(verdict, note=f"proved by {_hows(claims)}"), delivery


def classify_report(report: Report) -> tuple[Kind, str, str, str]:
    """(kind, status, diagnostic, note) from the report alone, before any proof."""
    if report.shape == "auto-reply":
        return Kind.IGNORED, "", "", "auto-reply (RFC 3834)"
    if report.shape == "none":
        return Kind.UNRECOGNISED, "", "", "not a bounce, complaint or auto-reply"
    if report.shape == "arf":
        if report.feedback_type == "abuse":
            return Kind.COMPLAINT, "abuse", one_line(report.reporter), ""
        return Kind.IGNORED, report.feedback_type, "", f"feedback type {report.feedback_type!r}"
    failed = [r for r in report.recipients if r.action == "failed"]
    if not failed:
        actions = sorted({r.action for r in report.recipients})
        return Kind.IGNORED, "", "", f"no failure ({', '.join(actions)})"
    kind, status, diagnostic = _mildest(failed)
    return kind, status, diagnostic, ""


_MILDNESS = {Kind.IGNORED: 0, Kind.POLICY: 1, Kind.SOFT: 2, Kind.HARD: 3}


def _mildest(failed: Sequence[Recipient]) -> tuple[Kind, str, str]:
    """The kind of a failure report. One copy goes to one subscriber, so every failed block
    is about them (an alias that forwards to several mailboxes gives several): the mildest
    one decides, since one working mailbox still reads the newsletter."""
    judged = []
    for r in failed:
        kind, code = classify(r.status, r.diagnostic)
        judged.append((kind, code or r.status, r.diagnostic))
    return min(judged, key=lambda j: _MILDNESS[j[0]])


def _hows(claims: Sequence[Claim]) -> str:
    return ", ".join(sorted({c.how for c in claims}))


def _unrecognised(verdict: Verdict, note: str) -> Verdict:
    return Verdict(verdict.key, Kind.UNRECOGNISED, verdict.shape, note=note, source=verdict.source)
