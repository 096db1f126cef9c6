"""The report as text lines: for a terminal, or GitHub Actions workflow commands.

GitHub's format (``::error file=F,line=L::message``) escapes as the Actions toolkit does
(``@actions/core``'s ``escapeData`` and ``escapeProperty``): ``%``, CR and LF in the message;
those and ``:`` and ``,`` in a property. Notes become ``::notice::``; the summary is plain.
"""

from __future__ import annotations

from mailer.check.findings import Report


def text_lines(report: Report, issue: str) -> list[str]:
    """``FILE:LINE: error: message`` per finding (errors first), the notes, the summary."""
    lines = [f"{f.location}: {f.level.value}: {f.message}" for f in report.findings]
    lines += [f"note: {note}" for note in report.notes]
    lines.append(report.summary(issue))
    return lines


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_lines(report: Report, issue: str) -> list[str]:
    """One workflow command per finding (shown inline in a pull request), then the summary."""
    lines = []
    for f in report.findings:
        props = [f"file={escape_property(f.file)}"]
        if f.line:
            props.append(f"line={f.line}")
        props.append(f"title={escape_property('mailer check')}")
        lines.append(f"::{f.level.value} {','.join(props)}::{escape_data(f.message)}")
    lines += [f"::notice::{escape_data(note)}" for note in report.notes]
    lines.append(report.summary(issue))
    return lines
