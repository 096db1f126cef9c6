"""What the compose step produces, and the per-recipient fill that the send step runs.

MJML and premailer run once per issue. Their output keeps *slots* (marker strings, see
:func:`slot`) where per-recipient values go; :class:`PersonalTemplate` splits the text at the
slots once, so personalising a copy is a join of precomputed parts, cheap enough to run
thousands of times a second.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.compose.images import ImageUse, PublishedImage
    from mailer.config import Config

# The values a copy is personalised with. All are plain text; the HTML side escapes them.
PERSONAL_FIELDS = ("name", "email", "unsubscribe_url", "web_url", "preferences_url")

_SLOT = re.compile(r"%%MAILER_([A-Z_]+)%%")
SLOT_MARKER = _SLOT  # what PersonalTemplate cuts at: issue text and config values cannot hold it


def slot(name: str) -> str:
    """The marker for a personal field, e.g. ``%%MAILER_UNSUBSCRIBE_URL%%``.

    Chosen to pass through Markdown, Jinja, MJML and premailer untouched (no characters they
    escape or rewrite), in text and in attribute values alike.
    """
    if name not in PERSONAL_FIELDS:
        raise ValueError(f"unknown personal field {name!r}")
    return f"%%MAILER_{name.upper()}%%"


@dataclass(frozen=True)
class PersonalTemplate:
    """A text cut at its slots: ``parts[0] + v(fields[0]) + parts[1] + ... + parts[-1]``."""

    parts: tuple[str, ...]
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> PersonalTemplate:
        pieces = _SLOT.split(text)
        parts, names = tuple(pieces[0::2]), tuple(p.lower() for p in pieces[1::2])
        for name in names:
            if name not in PERSONAL_FIELDS:
                raise ValueError(f"unknown slot %%MAILER_{name.upper()}%%")
        return cls(parts, names)

    def fill(self, values: Mapping[str, str]) -> str:
        """The text with every slot replaced by ``values[field]`` (inserted as given)."""
        out = [self.parts[0]]
        for name, part in zip(self.fields, self.parts[1:], strict=True):
            out.append(values[name])
            out.append(part)
        return "".join(out)


ADDED_LATER = {"hashed_unless_default": True}  # see Newsletter


@dataclass(frozen=True, kw_only=True)
class Newsletter:
    """All compose reads of the configuration: what the email shows, and the layouts folder.

    :func:`~mailer.compose.pipeline.content_hash` hashes exactly these fields, in this order
    (the layouts folder by its files, the others by their text). The field names and order are
    part of every recorded hash: renaming, reordering or adding one makes every ledger see a
    changed issue, so add a field only with the output it changes, at the end, marked
    ``ADDED_LATER``: it is then hashed only when it differs from its default, so an issue
    composed as before keeps the hash recorded before the field existed.
    """

    layouts_dir: Path
    name: str
    tagline: str = ""
    copyright: str = ""
    postal_address: str
    why_received: str = ""  # footer line: why the reader gets this email
    base_url: str  # public URL of `mailer serve`, without a trailing slash
    language: str = field(default="en", metadata=ADDED_LATER)  # a language tag: <html lang>

    @classmethod
    def from_config(cls, config: Config) -> Newsletter:
        """The newsletter a config describes (the fields have the config's names)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    def shown(self) -> Iterator[tuple[str, str]]:
        """(name, text) of every field the email shows, i.e. all but the layouts folder."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                yield f.name, value


@dataclass(frozen=True)
class IssueMeta:
    slug: str  # the folder name, e.g. "025-may-2022"
    number: int
    date: dt.date
    subject: str
    preheader: str


@dataclass(frozen=True)
class ComposedIssue:
    """An issue ready to send: HTML and text with slots, and the archive's web version."""

    meta: IssueMeta
    html: PersonalTemplate
    text: PersonalTemplate
    web_html: str  # the web version: no subscriber data, no unsubscribe token
    content_hash: str  # sha256 hex of everything that determines the output
    warnings: tuple[str, ...] = field(default=())
    # The issue folder's images as published (BASE_URL/media/NAME), each file once, and every
    # place one is shown (snippet, line, alt, sizes before and after): mailer.compose.images.
    media: tuple[PublishedImage, ...] = field(default=())
    images: tuple[ImageUse, ...] = field(default=())

    def personalise(self, values: Mapping[str, str]) -> tuple[str, str]:
        """(html, text) for one recipient; ``values`` holds every PERSONAL_FIELDS entry."""
        escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
        return self.html.fill(escaped), self.text.fill(values)
