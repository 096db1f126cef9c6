"""The composed issue as the ledger stores it, and back: what lets any worker send it.

:func:`facts_of` turns the editor's :class:`~mailer.compose.model.ComposedIssue` into the
facts the store keeps when the send starts (the HTML and text with their slots, so nothing
of a subscriber is stored); :func:`composed_of` turns the stored issue back into a
ComposedIssue that :class:`~mailer.send.message.MessageFactory` builds the same bytes from.
"""

from __future__ import annotations

import datetime as dt

from mailer.compose.model import ComposedIssue, IssueMeta, PersonalTemplate, slot
from mailer.send.ports import IssueFacts, StoredIssue


def template_text(template: PersonalTemplate) -> str:
    """The text ``template`` was parsed from (its slots written back in)."""
    out = [template.parts[0]]
    for name, part in zip(template.fields, template.parts[1:], strict=True):
        out.append(slot(name))
        out.append(part)
    return "".join(out)


def facts_of(issue: ComposedIssue) -> IssueFacts:
    meta = issue.meta
    return IssueFacts(
        slug=meta.slug,
        number=meta.number,
        subject=meta.subject,
        date=meta.date.isoformat(),
        content_hash=issue.content_hash,
        web_html=issue.web_html,
        preheader=meta.preheader,
        html=template_text(issue.html),
        text=template_text(issue.text),
    )


def composed_of(stored: StoredIssue) -> ComposedIssue:
    """The issue exactly as its send started, rebuilt from what the store kept."""
    facts = stored.facts
    meta = IssueMeta(
        slug=facts.slug,
        number=facts.number,
        date=dt.date.fromisoformat(facts.date),
        subject=facts.subject,
        preheader=facts.preheader,
    )
    return ComposedIssue(
        meta=meta,
        html=PersonalTemplate.parse(facts.html),
        text=PersonalTemplate.parse(facts.text),
        web_html=facts.web_html,
        content_hash=facts.content_hash,
    )
