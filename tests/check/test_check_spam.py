"""`mailer check`'s SpamAssassin score (local rules), and its note when it is not installed.

Marked like tests/compose/test_spam.py: the ``spamassassin`` fixture of tests/mta marks the
test ``mta`` and skips it (or fails it under MAILER_REQUIRE_MTA=1) without spamassassin.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from typer.testing import Result

from mailer.check import spam
from tests.check.conftest import ISSUE
from tests.mta import SpamAssassin


@pytest.mark.timeout(300)  # two SpamAssassin runs: ~5-10 s each on a busy 2-core machine
def test_a_score_above_the_threshold_is_a_warning(
    check: Callable[..., Result], spamassassin: SpamAssassin
) -> None:
    clean = check(spam=True)
    assert clean.exit_code == 0, clean.output
    note = re.search(
        r"^note: SpamAssassin: (-?[\d.]+) points \(warning above 3\)$", clean.stdout, re.M
    )
    assert note is not None, clean.stdout
    points = float(note.group(1))
    assert clean.stdout.endswith(f"{ISSUE}: 0 errors, 0 warnings\n")

    low = check("--spam-threshold", str(points - 1), spam=True)  # the same message, a lower bar
    assert low.exit_code == 0, low.output  # a warning only
    first = low.stdout.split("\n")[0]
    assert first.startswith(
        f"{ISSUE}/issue.toml: warning: SpamAssassin scores the message {points:g} points "
        f"(above {points - 1:g}): "
    ), low.stdout
    assert low.stdout.endswith(f"{ISSUE}: 0 errors, 1 warning\n")


def test_without_spamassassin_a_note_says_it_was_skipped(
    check: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spam, "SPAMASSASSIN", "spamassassin-not-installed-here")
    result = check(spam=True)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "note: SpamAssassin: skipped (spamassassin is not installed)\n"
        f"{ISSUE}: 0 errors, 0 warnings\n"
    )
