"""What ``mailer check`` finds: one :class:`Finding` per problem, with its file and line.

A finding's message is written for the editor, without the location (the output formats
put it in front: ``FILE:LINE: message``, or GitHub's ``::error file=...,line=...::``).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


class Level(enum.StrEnum):
    ERROR = "error"  # `mailer check` exits 1 and `mailer send` refuses to start
    WARNING = "warning"  # reported; nothing is blocked


@dataclass(frozen=True)
class Finding:
    level: Level
    file: str  # as shown: relative to the working folder when under it
    line: int | None
    message: str

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def shown(path: Path | str) -> str:
    """A path as findings name it: relative to the working folder when it is inside it (so a
    CI annotation names the file in the repository), else as given."""
    text = str(path)
    absolute = os.path.abspath(text)
    here = os.getcwd()
    if absolute == here or absolute.startswith(here.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, here)
    return text


def error(path: Path | str, line: int | None, message: str) -> Finding:
    return Finding(Level.ERROR, shown(path), line, message)


def warning(path: Path | str, line: int | None, message: str) -> Finding:
    return Finding(Level.WARNING, shown(path), line, message)


# An IssueError's text is "FILE:LINE: message" or "FILE: message" (mailer/compose/issue.py).
_LOCATED = re.compile(r"^(?P<file>[^\n]*?\.(?:md|toml|j2|mjml|html|txt))(?::(?P<line>\d+))?: ")


def from_error(text: str, default_file: Path | str) -> Finding:
    """An error the build refused with, as a finding at the file and line it names."""
    found = _LOCATED.match(text)
    if found is None:  # e.g. "issues/x: no such issue folder"
        return error(default_file, None, text.removeprefix(f"{default_file}: "))
    line = int(found.group("line")) if found.group("line") else None
    return error(found.group("file"), line, text[found.end() :])


@dataclass(frozen=True)
class Report:
    """Every finding (errors first, then by file and line) and notes (what was skipped)."""

    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, findings: Iterable[Finding], notes: Iterable[str] = ()) -> Report:
        unique = list(dict.fromkeys(findings))  # the same finding from two checks once
        order = {Level.ERROR: 0, Level.WARNING: 1}
        unique.sort(key=lambda f: (order[f.level], f.file, f.line or 0))
        return cls(tuple(unique), tuple(notes))

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level is Level.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level is Level.WARNING)

    def summary(self, issue: str) -> str:
        def count(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        return (
            f"{issue}: {count(len(self.errors), 'error')}, {count(len(self.warnings), 'warning')}"
        )
