"""Hard, soft or policy from status codes and the words real servers send."""

from __future__ import annotations

import pytest

from mailer.bounces.codes import classify, find_code
from mailer.bounces.ports import SOFT_LIMIT, Kind, decide, soft_streak

CASES = [
    # (Status, Diagnostic-Code, kind, code decided on)
    (
        "5.1.1",
        "smtp; 550 5.1.1 The email account that you tried to reach does not exist.",
        Kind.HARD,
        "5.1.1",
    ),
    ("5.1.10", "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound", Kind.HARD, "5.1.10"),
    ("5.1.2", "smtp; 550 5.1.2 Host unknown", Kind.HARD, "5.1.2"),
    ("5.4.4", "X-Postfix; Host or domain name not found", Kind.HARD, "5.4.4"),
    ("5.2.2", "smtp; 552 5.2.2 The recipient's inbox is out of storage space", Kind.SOFT, "5.2.2"),
    ("5.2.1", "smtp; 550 5.2.1 This mailbox is disabled", Kind.SOFT, "5.2.1"),
    ("5.3.4", "smtp; 552 5.3.4 Message size exceeds fixed limit", Kind.SOFT, "5.3.4"),
    ("4.4.7", "smtp; 421 4.4.7 Message expired", Kind.SOFT, "4.4.7"),
    ("5.7.1", "smtp; 550 5.7.1 likely unsolicited mail", Kind.POLICY, "5.7.1"),
    (
        "5.7.26",
        "smtp; 550 5.7.26 Unauthenticated email is not accepted (DMARC)",
        Kind.POLICY,
        "5.7.26",
    ),
    ("5.1.8", "smtp; 553 5.1.8 Sender address domain does not exist", Kind.POLICY, "5.1.8"),
    # Generic codes: the words decide.
    ("5.0.0", "smtp; 550 <a@example.org>... User unknown", Kind.HARD, "5.0.0"),
    ("5.0.0", "smtp; 550 5.1.1 <a@example.org>: Recipient address rejected", Kind.HARD, "5.1.1"),
    (
        "5.0.0",
        "smtp; 554 Blocked - see https://www.spamhaus.org/query/ip/192.0.2.1",
        Kind.POLICY,
        "5.0.0",
    ),
    ("5.0.0", "smtp; 552 Mailbox full", Kind.SOFT, "5.0.0"),
    ("5.0.0", "", Kind.SOFT, "5.0.0"),  # no reason at all: soft, three strikes
    ("", "553 5.3.0 <a@example.org>... No such user here", Kind.HARD, "5.3.0"),
    ("", "This user doesn't have a yahoo.com account", Kind.HARD, ""),
    ("", "L'adresse de messagerie n'existe pas", Kind.HARD, ""),
    ("", "550 Mailbox unavailable; DMARC policy of example.org says reject", Kind.POLICY, "5.0.0"),
]


@pytest.mark.parametrize(("status", "diagnostic", "kind", "code"), CASES)
def test_classify(status: str, diagnostic: str, kind: Kind, code: str) -> None:
    assert classify(status, diagnostic) == (kind, code)


def test_find_code_takes_whole_codes_only() -> None:
    assert find_code("550 5.1.1 user unknown") == "5.1.1"
    assert find_code("(#5.1.1)") == "5.1.1"
    assert find_code("Status: 5.1.10") == "5.1.10"
    assert find_code("JetMail 2.5.3.0 and version 1.2.3") == ""


def test_soft_streak_counts_back_to_the_last_clean_issue() -> None:
    assert soft_streak(["soft", "soft", "soft"]) == 3
    assert soft_streak(["soft", "policy", "soft", "", "soft"]) == 2  # policy: skipped
    assert soft_streak(["", "soft", "soft"]) == 0  # the newest issue got through
    assert soft_streak(["soft", "hard", "soft"]) == 1


def test_decide_never_overwrites_an_unsubscribe_and_never_counts_twice() -> None:
    assert decide(Kind.HARD, "active", "", 0).new_status == "bounced"
    assert decide(Kind.HARD, "unsubscribed", "", 0) == decide(Kind.HARD, "complained", "", 0)
    assert decide(Kind.HARD, "unsubscribed", "", 0).note
    assert not decide(Kind.HARD, "active", "hard", 0).counted  # the SMTP dialogue's bounce
    assert not decide(Kind.SOFT, "active", "hard", 0).counted
    assert decide(Kind.COMPLAINT, "bounced", "hard", 0).new_status == "complained"
    assert decide(Kind.COMPLAINT, "unsubscribed", "", 0).new_status == ""
    assert decide(Kind.SOFT, "active", "", SOFT_LIMIT - 1).new_status == ""
    assert decide(Kind.SOFT, "active", "", SOFT_LIMIT).new_status == "bounced"
    policy = decide(Kind.POLICY, "active", "", 0)
    assert policy.counted and not policy.new_status and not policy.note
