"""The bulk-sender rules of a real send, as check findings.

The rules themselves live in :mod:`mailer.send.readiness` (one implementation, which
``mailer send`` enforces when it starts); here each becomes a warning at the config key's
line. ``mailer send`` refuses what the readiness module calls an error, unless
``bulk_sender_rules = "warn"``, so the message says so. A send that stays on this machine
(``maildir:``, a loopback relay) gets no findings, as at send time.
"""

from __future__ import annotations

import re
from pathlib import Path

from mailer.check.findings import Finding, warning
from mailer.config import Config
from mailer.send import readiness


def check_sending(config: Config, config_file: Path) -> list[Finding]:
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    found = []
    for rule in readiness.findings(config):
        refused = rule.level is readiness.Level.ERROR
        note = f' (`mailer send` refuses this unless {readiness.OVERRIDE} = "warn")'
        found.append(
            warning(
                config_file,
                _key_line(text, rule.setting),
                f"{rule.setting}: {rule.message}{note if refused else ''}",
            )
        )
    return found


def _key_line(text: str, key: str) -> int | None:
    for number, line in enumerate(text.split("\n"), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None
