"""Is a send ready for the big mailbox providers? The bulk-sender rules, as findings.

Gmail and Yahoo (since 2024) take bulk mail only when it can pass DMARC and offers a
one-click unsubscribe. What mailer's settings decide of that:

* ``base_url`` must be https: List-Unsubscribe-Post one-click (RFC 8058) needs an HTTPS URI.
  An error.
* DKIM should be on (``dkim_*``): without it DMARC rests on SPF alone, which breaks on
  every forward. A warning.
* ``dkim_domain`` must be aligned with the From domain, i.e. have the same organisational
  domain (RFC 7489 3.2: the Public Suffix List decides it), or the signature does not count
  for DMARC. An error.
* The envelope sender (bounce address) should be aligned too, for SPF's part in DMARC.
  A warning.

The rules apply to a send that leaves the machine: not to ``maildir:`` nor to a loopback
relay (``mailer sink``, a test server). ``mailer send`` refuses to start on an error unless
``bulk_sender_rules = "warn"`` (then it warns, as it does for warnings). This module is the
one place the rules live; anything that wants to check a config (``mailer send``, its dry
run, a ``mailer check``) calls :func:`findings`.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import idna
from publicsuffixlist import PublicSuffixList

from mailer.config import Config
from mailer.errors import SendError
from mailer.send.relay import stays_local

OVERRIDE = "bulk_sender_rules"  # the setting that turns errors into warnings


class Level(enum.StrEnum):
    ERROR = "error"  # the send is refused (unless overridden)
    WARNING = "warning"  # the send goes; the message says what is at risk


@dataclass(frozen=True)
class Finding:
    level: Level
    setting: str  # the key it concerns
    message: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


@functools.cache
def _suffixes() -> PublicSuffixList:
    # The list bundled with the package (no network); ~0.1 s to load, so only when asked.
    return PublicSuffixList()


def organisational_domain(domain: str) -> str:
    """The registrable domain of ``domain`` (``news.example.co.uk`` -> ``example.co.uk``);
    the domain itself when it is a public suffix or unknown (``localhost``)."""
    name = domain.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode()
        except idna.IDNAError:
            return name
    return _suffixes().privatesuffix(name) or name


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def findings(config: Config) -> list[Finding]:
    """What a real send with ``config`` would break of the bulk-sender rules (errors first);
    nothing for a send that stays on this machine."""
    if stays_local(config):
        return []
    found: list[Finding] = []
    if not config.base_url.lower().startswith("https://"):
        found.append(
            Finding(
                Level.ERROR,
                "base_url",
                f"{config.base_url} is not https: Gmail and Yahoo want bulk mail to offer a "
                "one-click unsubscribe, which RFC 8058 allows only over HTTPS",
            )
        )
    from_org = organisational_domain(_domain(config.from_address))
    if config.dkim_domain:
        dkim_org = organisational_domain(config.dkim_domain)
        if dkim_org != from_org:
            found.append(
                Finding(
                    Level.ERROR,
                    "dkim_domain",
                    f"{config.dkim_domain} is not aligned with the From domain "
                    f"{_domain(config.from_address)} ({dkim_org} is not {from_org}): the "
                    "signature would not count for DMARC",
                )
            )
    else:
        found.append(
            Finding(
                Level.WARNING,
                "dkim_key_file",
                "DKIM is off: Gmail and Yahoo want bulk mail DKIM-signed by the From domain; "
                "without it DMARC rests on SPF alone, which forwarding breaks",
            )
        )
    sender_org = organisational_domain(_domain(config.sender))
    if sender_org != from_org:
        found.append(
            Finding(
                Level.WARNING,
                "envelope_sender",
                f"{config.sender} is not aligned with the From domain "
                f"{_domain(config.from_address)}: SPF cannot count for DMARC",
            )
        )
    return sorted(found, key=lambda f: f.level is not Level.ERROR)


def check(config: Config) -> tuple[list[Finding], SendError | None]:
    """(the findings to warn about, the refusal to raise or None) for a send with ``config``:
    errors refuse it, naming every one, unless ``bulk_sender_rules = "warn"``."""
    found = findings(config)
    errors = [f for f in found if f.level is Level.ERROR]
    if not errors or config.bulk_sender_rules == "warn":
        return found, None
    refusal = SendError(
        "not sent, Gmail and Yahoo would refuse or junk it: "
        + "; ".join(map(str, errors))
        + f' (or set {OVERRIDE} = "warn" to send anyway)'
    )
    return [f for f in found if f.level is Level.WARNING], refusal
