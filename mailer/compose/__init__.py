"""Compose: an issue folder -> Jinja2 -> MJML -> inlined HTML, plus a plain-text twin.

Pure: no database, no network. The entry point is :func:`compose_issue`.
"""

from mailer.compose.front_matter import Article
from mailer.compose.issue import Issue, Section, load_issue
from mailer.compose.model import (
    PERSONAL_FIELDS,
    ComposedIssue,
    IssueMeta,
    Newsletter,
    PersonalTemplate,
    slot,
)
from mailer.compose.pipeline import GMAIL_CLIP_BYTES, compose_issue

__all__ = [
    "GMAIL_CLIP_BYTES",
    "PERSONAL_FIELDS",
    "Article",
    "ComposedIssue",
    "Issue",
    "IssueMeta",
    "Newsletter",
    "PersonalTemplate",
    "Section",
    "compose_issue",
    "load_issue",
    "slot",
]
