"""Compose: an issue folder -> Jinja2 -> MJML -> inlined HTML, plus a plain-text twin.

Pure: no database, no network.
"""

from mailer.compose.model import (
    PERSONAL_FIELDS,
    ComposedIssue,
    IssueMeta,
    PersonalTemplate,
    slot,
)

__all__ = ["PERSONAL_FIELDS", "ComposedIssue", "IssueMeta", "PersonalTemplate", "slot"]
