"""Hard, soft or policy: what a failure's status code and the remote server's words mean.

The enhanced status code (RFC 3463, ``class.subject.detail``) decides where it is specific:

* **hard** (the address is dead): 5.1.0-5.1.6 (bad mailbox, bad domain, bad syntax, moved),
  5.1.10 (the domain publishes a null MX, RFC 7505), 5.4.4 (no route to the domain);
* **policy** (refused for the sender's sake, never held against the subscriber): 5.7.x
  (spam blocks, DMARC, reputation, relaying denied), 5.1.7 and 5.1.8 (our own address);
* **soft**: everything else that failed: 5.2.x (mailbox full or disabled), 5.3.x (too
  large, system full), 4.x.x in a failed report (given up after retrying), 5.4.x, 5.5.x ...

Generic codes (x.0.0, none, or the bare SMTP reply an old MTA quotes) say nothing; then the
diagnostic text decides, with the phrases real servers use ("user unknown", "mailbox full",
"blocked", "DMARC" ...), and anything unclear is soft: three in a row still bounce the
address, while a wrong "hard" would drop a reader at once.
"""

from __future__ import annotations

import re

from mailer.bounces.ports import Kind

__all__ = ["classify", "find_code"]

_CODE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY = re.compile(r"\b([45])\d\d[ -]")

_POLICY_WORDS = re.compile(
    r"dmarc|spf|dkim|spam|blocked|block ?list|black ?list|blacklisted|reputation|"
    r"(?<!not )listed (at|in|on)|\brbl\b|spamhaus|barracuda|\bpolicy\b|not accepted for "
    r"policy|unsolicited|relay(ing)? (access )?denied|not permitted to relay|"
    r"authentication required|poor reputation|too many (messages|connections)|"
    r"rate limit|throttl|content rejected|(virus|malware) (found|detected)|infected",
    re.IGNORECASE,
)
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address|person)|"
    r"(user|mailbox|recipient|address|account)( name)? (does not|doesn'?t) exist|"
    r"(mailbox|account|address) (is )?(unavailable|not found|invalid|disabled|closed)|"
    r"unknown (recipient|mailbox|address|local part)|invalid (recipient|mailbox|address)|"
    r"recipient (address )?rejected|not a (valid|known) (user|recipient|mailbox)|"
    r"no mailbox here|no longer (active|available|valid|exists)|has been disabled|"
    r"unrouteable address|host (or domain name )?not found|domain (not found|"
    r"does not exist)|name or service not known|no (mx|mail exchanger)|"
    r"mailbox not found|user not found|unknown address|bad destination|"
    r"address rejected|undeliverable address|not our customer|account expired|"
    r"user not known|unknown host|doesn'?t have an? [\w.-]{1,60} account|"
    r"not listed in (the )?([\w ]{1,20})?directory|invalid ([\w ]{1,20})?user ?id|"
    r"does not have a final (e-?mail )?delivery point|no matches to nameserver query|"
    r"did not (exactly )?match|addressee unknown|disabled or discontinued|"
    r"n'existe pas|existiert nicht|unbekannt|no existe|non esiste|wrong or no longer valid",
    re.IGNORECASE,
)
_SOFT_WORDS = re.compile(
    r"mailbox (is )?full|mailfolder is full|over ?(disk )?quota|(disk )?quota (exceeded|"
    r"violation)|exceeding (their|the|its) quota|reached (its |the )?disk quota|"
    r"exceeded (the )?(storage|quota)|"
    r"insufficient (system )?storage|too large|message size|size limit|"
    r"temporar|try again|out of (disk|storage) space|space not enough|not enough space",
    re.IGNORECASE,
)


def find_code(text: str) -> str:
    """The first enhanced status code in ``text`` (e.g. "5.1.1"), or ""."""
    match = _CODE.search(text)
    return ".".join(match.groups()) if match else ""


def _generic(code: str) -> bool:
    """No code, x.0.0, or x.3.0 / x.5.0 (old Sendmail's "553 5.3.0 ... No such user"):
    codes that say too little, so the words decide."""
    return not code or code.endswith((".0.0", ".3.0", ".5.0"))


def classify(status: str, diagnostic: str = "") -> tuple[Kind, str]:
    """The kind of a failed delivery and the code it was decided on.

    ``status`` is the report's ``Status`` field (may be empty); ``diagnostic`` the remote
    server's reply (``Diagnostic-Code``) or a text bounce's explanation.
    """
    code = find_code(status)
    if _generic(code):
        # An MTA that got a bare "550 User unknown" reports 5.0.0: look in the reply.
        code = find_code(diagnostic) or code
    if not _generic(code):
        return _by_code(code), code
    kind = _by_words(f"{status} {diagnostic}")
    if (
        kind is Kind.SOFT
        and code
        and not code.endswith(".0.0")
        and not _SOFT_WORDS.search(diagnostic)
    ):
        kind = _by_code(code)
    if not code:
        reply = _REPLY.search(f"{status} {diagnostic}")
        code = f"{reply.group(1)}.0.0" if reply else ""
    return kind, code


def _by_code(code: str) -> Kind:
    klass, subject, detail = (int(part) for part in code.split("."))
    if klass == 2:
        return Kind.IGNORED  # delivered after all
    if subject == 7 or (subject == 1 and detail in (7, 8)):
        return Kind.POLICY
    if klass == 5 and (subject == 1 and detail in (0, 1, 2, 3, 4, 5, 6, 10)):
        return Kind.HARD
    if klass == 5 and subject == 4 and detail == 4:
        return Kind.HARD
    return Kind.SOFT


def _by_words(diagnostic: str) -> Kind:
    # Policy first: "blocked: user unknown to our spam filter" must not drop the reader.
    if _POLICY_WORDS.search(diagnostic):
        return Kind.POLICY
    if _SOFT_WORDS.search(diagnostic):
        return Kind.SOFT
    if _HARD_WORDS.search(diagnostic):
        return Kind.HARD
    return Kind.SOFT
