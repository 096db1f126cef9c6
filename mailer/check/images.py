"""The issue folder's images as the build published them (its per-image facts): a size budget.

A local image (``image: photo.jpg``, ``![alt](photo.jpg)``) is resized and re-encoded by the
build (mailer/compose/images.py); what a reader downloads is the published file. A warning
names each one over :data:`IMAGE_BUDGET_BYTES` at the line that shows it, and the issue when
all of them together pass :data:`TOTAL_BUDGET_BYTES` (slow on a phone's connection, and
some clients stop loading). Alt text is checked on the source (mailer/check/source.py), for
local images as for remote ones. Remote images are not measured (that needs the network).
"""

from __future__ import annotations

from pathlib import Path

from mailer.check.findings import Finding, warning
from mailer.compose import ComposedIssue

IMAGE_BUDGET_BYTES = 200_000  # one published image
TOTAL_BUDGET_BYTES = 1_000_000  # every published image of the issue together


def check_images(composed: ComposedIssue, manifest: Path) -> list[Finding]:
    found = []
    for use in composed.images:
        size = use.image.size
        if size > IMAGE_BUDGET_BYTES:
            found.append(
                warning(
                    use.source,
                    use.line,
                    f"image {use.ref!r} is {size:,} bytes as published "
                    f"({use.image.width}x{use.image.height}), over the "
                    f"{IMAGE_BUDGET_BYTES // 1000} KB budget: crop it or use a simpler picture",
                )
            )
    total = sum(image.size for image in composed.media)
    if total > TOTAL_BUDGET_BYTES:
        found.append(
            warning(
                manifest,
                None,
                f"the issue's images are {total:,} bytes as published, over the "
                f"{TOTAL_BUDGET_BYTES // 1000} KB budget for one email",
            )
        )
    return found
