"""The archive's URLs: one place that turns an issue's slug into its path."""

from __future__ import annotations

from urllib.parse import quote


def issue_path(slug: str) -> str:
    """``issues/<slug>``, relative to the site's root, the slug percent-encoded whole.

    Every character but letters, digits and ``_.-~`` is encoded, ``/`` too, so a slug is
    always one path segment (the route takes the decoded rest of the path as the slug).
    """
    return "issues/" + quote(slug, safe="")
