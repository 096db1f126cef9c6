"""Stored text as it may reach a terminal: control characters shown, never obeyed.

A name such as ``\\x1b]0;PWNED\\x07\\x1b[2J`` printed raw retitles and clears the terminal of
whoever lists the subscribers. Input refuses such names now (mailer.store.addresses), but a
database may hold older or foreign rows, so every command that prints stored text passes it
through :func:`printable`: each C0/C1 control character and DEL becomes a visible escape
(``\\x1b``, ``\\t``, ``\\n``), the rest is printed as is.
"""

from __future__ import annotations

__all__ = ["printable"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPES = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in (*range(0x20), *range(0x7F, 0xA0))
}


def printable(text: str) -> str:
    """``text`` with its control characters escaped (one line, inert on a terminal)."""
    return text.translate(_ESCAPES)
