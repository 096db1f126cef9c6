"""The sample issue, as sent, through SpamAssassin's local rules (issue 9, item 11).

The message is built by mailer's own MessageFactory, exactly as `mailer send` builds it, and
scored by ``spamassassin -t -L`` (the ``spamassassin`` fixture of tests/mta). The preheader
used to be hidden partly by white text on the page's grey, which cost 0.7 points
(HTML_FONT_LOW_CONTRAST); the layout now hides it without a colour.
"""

from __future__ import annotations

import pytest

from mailer.compose import ComposedIssue
from mailer.config import Config
from mailer.send.message import MessageFactory
from mailer.send.ports import Recipient
from mailer.tokens import new_uid
from tests.mta import SpamAssassin

MAX_SCORE = 0.1


def test_the_sample_issue_as_sent_scores_clean(
    sample: ComposedIssue,
    config: Config,
    spamassassin: SpamAssassin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_SECRET_KEY", "s" * 43)
    factory = MessageFactory(sample, config)
    raw = factory.build(Recipient(new_uid(), "reader@example.org", "Sample Reader"))
    report = spamassassin.check(raw)
    print(f"SpamAssassin: {report.status}")  # the score and the rules that fired, for the log
    assert "HTML_FONT_LOW_CONTRAST" not in report.rules
    assert report.score <= MAX_SCORE, report.rules
