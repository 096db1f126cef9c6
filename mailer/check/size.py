"""The built email's HTML size against Gmail's clipping.

Counted as Gmail counts it, as far as it is known: the bytes of the HTML part as sent,
decoded (UTF-8, before quoted-printable), after premailer's inlining, personalised for the
sample reader (whose unsubscribe and preferences URLs are as long as a real reader's).
Gmail hides everything past 102 KB behind "[Message clipped]", the unsubscribe link with it.
"""

from __future__ import annotations

from pathlib import Path

from mailer.check.findings import Finding, error, warning
from mailer.compose.build import Built
from mailer.compose.pipeline import GMAIL_CLIP_BYTES, SIZE_WARNING_BYTES


def check_size(built: Built, manifest: Path) -> list[Finding]:
    size = built.html_bytes
    limit = GMAIL_CLIP_BYTES // 1000
    if size > GMAIL_CLIP_BYTES:
        return [
            error(
                manifest,
                None,
                f"the HTML is {size:,} bytes: Gmail clips it above {limit} KB, hiding the rest "
                "and the unsubscribe link (shorten articles or move some to the web)",
            )
        ]
    if size > SIZE_WARNING_BYTES:
        return [
            warning(
                manifest,
                None,
                f"the HTML is {size:,} bytes, close to Gmail's {limit} KB clipping limit "
                f"(warned above {SIZE_WARNING_BYTES // 1000} KB)",
            )
        ]
    return []
