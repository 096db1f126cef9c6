"""SpamAssassin's score of the built message, when ``spamassassin`` is installed.

The message is the one a reader gets: mailer's own :class:`MessageFactory` builds it for the
sample reader, as ``mailer send`` would (unsigned; tokens made with a throwaway key, so the
check never needs the real secret). SpamAssassin runs its local rules only (``-t -L``, no
network tests, no Bayes: ``-x`` and ``use_bayes 0``), as tests/compose/test_spam.py does.
Above ``threshold`` points (``mailer check --spam-threshold``, default
:data:`SPAM_THRESHOLD`) it is a warning naming the rules that fired.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from mailer.check.findings import Finding, warning
from mailer.compose import ComposedIssue
from mailer.compose.build import SAMPLE_EMAIL, SAMPLE_NAME
from mailer.config import Config
from mailer.send.message import MessageFactory
from mailer.send.ports import Recipient

# SpamAssassin's own spam mark is 5.0; a few points below it leaves room for what the
# network tests (DNS blocklists, URIBL) that -L leaves out would add at the reader's server.
SPAM_THRESHOLD = 3.0
SPAMASSASSIN = "spamassassin"
COMMAND = (SPAMASSASSIN, "-t", "-L", "-x", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0")
TIMEOUT_SECONDS = 120.0


class _ThrowawayKey(Config):
    """The config with a random token key: the built message is scored, never sent."""

    def secret_keys(self) -> list[bytes]:
        return [secrets.token_urlsafe(32).encode()]


def installed() -> bool:
    return shutil.which(SPAMASSASSIN) is not None


def sample_message(issue: ComposedIssue, config: Config) -> bytes:
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    factory = MessageFactory(issue, _ThrowawayKey(**values))
    return factory.build(Recipient(secrets.token_hex(16), SAMPLE_EMAIL, SAMPLE_NAME))


def score(raw: bytes) -> tuple[float, list[str]]:
    """(points, the rules that fired) of ``raw`` by ``spamassassin -t -L``."""
    done = subprocess.run(
        COMMAND, input=raw, capture_output=True, timeout=TIMEOUT_SECONDS, check=False
    )
    out = done.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: (.*(?:\n[ \t].*)*)", out, re.MULTILINE)
    if status is None:
        raise OSError(f"spamassassin gave no X-Spam-Status (exit {done.returncode})")
    unfolded = " ".join(status.group(1).split())
    points = re.search(r"score=(-?[\d.]+)", unfolded)
    tests = re.search(r"tests=(\S*)", unfolded)
    if points is None:
        raise OSError("spamassassin gave no score")
    rules = [t for t in (tests.group(1) if tests else "").split(",") if t and t != "none"]
    return float(points.group(1)), rules


def check_spam(
    issue: ComposedIssue, config: Config, manifest: Path, threshold: float
) -> tuple[list[Finding], str]:
    """(findings, the note line saying what was scored or why not)."""
    if not installed():
        return [], "SpamAssassin: skipped (spamassassin is not installed)"
    try:
        points, rules = score(sample_message(issue, config))
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"SpamAssassin: skipped ({exc})"
    note = f"SpamAssassin: {points:g} points (warning above {threshold:g})"
    if points <= threshold:
        return [], note
    fired = ", ".join(rules) or "no rule named"
    message = f"SpamAssassin scores the message {points:g} points (above {threshold:g}): {fired}"
    return [warning(manifest, None, message)], note
