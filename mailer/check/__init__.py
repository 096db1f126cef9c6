"""``mailer check``: every mistake in an issue caught before the send, with file and line.

The same checks run locally, in a pull request's CI (``--format github``) and as the gate of
``mailer send`` (:data:`SEND_GATE`). The entry point is :func:`check_issue`.
"""

from mailer.check.findings import Finding, Level, Report
from mailer.check.output import github_lines, text_lines
from mailer.check.run import SEND_GATE, CheckOptions, check_issue

__all__ = [
    "SEND_GATE",
    "CheckOptions",
    "Finding",
    "Level",
    "Report",
    "check_issue",
    "github_lines",
    "text_lines",
]
