"""Database URLs as they may be shown: with every credential hidden.

A password can sit in the URL's user part (``user:PASSWORD@host``) or in its query
(``?password=...``, ``sslpassword=...``, a token for a cloud proxy): both are replaced by
``***``. A query parameter counts as a credential when its name says so (pass, pwd,
secret, token, key, auth, credential); hiding a harmless one (``sslkey``, a path) costs
nothing, showing a secret would.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["redacted"]

HIDDEN = "***"
_CREDENTIAL = re.compile(r"pass|pwd|secret|token|key|auth|credential", re.IGNORECASE)


def redacted(url: str) -> str:
    """The URL with any password or other credential hidden, for messages and logs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    secret = {name: HIDDEN for name in parsed.query if _CREDENTIAL.search(name)}
    if secret:
        parsed = parsed.update_query_dict(secret)
    # The query's values are percent-encoded when rendered: show the mark as itself.
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN)
