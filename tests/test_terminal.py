"""mailer.cli.terminal: stored text made safe to print (control characters escaped)."""

from __future__ import annotations

import unicodedata

from mailer.cli.terminal import printable


def test_printable_escapes_every_control_character_and_keeps_the_rest() -> None:
    shown = printable("".join(map(chr, range(0x200))))
    assert not [c for c in shown if unicodedata.category(c) == "Cc"]
    assert len(shown) == 0x200 - 65 + 2 * 3 + 4 * 62  # \t \n \r, and \xNN for the other 62
    assert printable("Zoë \u202fO'Brien, 日本") == "Zoë \u202fO'Brien, 日本"
    assert printable("\t\n\r\x00\x1b\x7f\x9f") == "\\t\\n\\r\\x00\\x1b\\x7f\\x9f"
