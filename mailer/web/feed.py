"""The archive as an Atom feed (RFC 4287), built with ElementTree so everything is escaped."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from mailer.store.archive import ArchivedIssue
from mailer.web.urls import issue_path

ATOM = "http://www.w3.org/2005/Atom"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def atom_feed(
    *, title: str, subtitle: str, base_url: str, issues: Sequence[ArchivedIssue]
) -> bytes:
    """The feed document; links are absolute (``base_url`` + path)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(feed, "title", title)
    if subtitle:
        _sub(feed, "subtitle", subtitle)
    _sub(feed, "id", f"{base_url}/")
    _sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base_url}/feed.xml")
    _sub(feed, "link", rel="alternate", type="text/html", href=f"{base_url}/")
    updated = max((issue.updated for issue in issues), default=_EPOCH)
    _sub(feed, "updated", _rfc3339(updated))
    author = _sub(feed, "author")
    _sub(author, "name", title)
    for issue in issues:
        url = f"{base_url}/{issue_path(issue.slug)}"
        entry = _sub(feed, "entry")
        _sub(entry, "title", issue.subject)
        _sub(entry, "id", url)
        _sub(entry, "link", rel="alternate", type="text/html", href=url)
        _sub(entry, "published", _rfc3339(issue.published))
        _sub(entry, "updated", _rfc3339(issue.updated))
        _sub(entry, "summary", f"Issue #{issue.number}, {issue.date}: {issue.subject}")
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document
