"""`mailer build`: compose an issue, write index.html and index.txt, describe the result."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from mailer.compose.images import MEDIA_PREFIX, PublishedImage
from mailer.compose.issue import load_issue
from mailer.compose.layout import date_text
from mailer.compose.model import ComposedIssue, IssueMeta, Newsletter
from mailer.compose.pipeline import GMAIL_CLIP_BYTES, compose_loaded, size_warning
from mailer.errors import IssueError
from mailer.files import atomic_outputs
from mailer.tokens import TOKEN_LENGTH

SAMPLE_NAME = "Sample Reader"
SAMPLE_EMAIL = "reader@example.org"
MEDIA_FOLDER = MEDIA_PREFIX.rstrip("/")


def sample_values(newsletter: Newsletter, meta: IssueMeta) -> dict[str, str]:
    """A made-up subscriber, with unsubscribe and preferences URLs as long as real ones (for
    sizes)."""
    token = "SAMPLE-NOT-A-VALID-TOKEN".ljust(TOKEN_LENGTH, "0")
    return {
        "name": SAMPLE_NAME,
        "email": SAMPLE_EMAIL,
        "unsubscribe_url": f"{newsletter.base_url}/unsubscribe/{token}",
        "web_url": web_url(newsletter, meta),
        "preferences_url": f"{newsletter.base_url}/preferences/{token}",
    }


def web_url(newsletter: Newsletter, meta: IssueMeta) -> str:
    """Where the web app (``mailer serve``) shows an issue's web version."""
    return f"{newsletter.base_url}/issues/{meta.slug}"


@dataclass(frozen=True)
class Built:
    composed: ComposedIssue
    html: str  # personalised with sample_values
    text: str
    sections: tuple[tuple[str, int], ...]  # (title, article count)
    warnings: tuple[str, ...]

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def text_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


def build(issue_dir: Path, newsletter: Newsletter) -> Built:
    """Compose and personalise with the sample subscriber; nothing is written."""
    issue = load_issue(issue_dir)
    composed = compose_loaded(issue, newsletter)
    html, text = composed.personalise(sample_values(newsletter, composed.meta))
    sections = tuple((s.title, len(s.articles)) for s in issue.sections)
    warnings = [w for w in composed.warnings if not w.startswith("HTML is ")]
    warning = size_warning(len(html.encode("utf-8")))
    if warning:
        warnings.append(warning)
    return Built(composed, html, text, sections, tuple(warnings))


def write_build(built: Built, out_dir: Path) -> tuple[Path, Path]:
    """Write index.html and index.txt into ``out_dir``: both whole or neither, and no folder
    left behind on failure (:func:`mailer.files.atomic_outputs`); the published images go to
    ``out_dir/media/NAME`` (as served at BASE_URL/media/NAME) before the two are renamed in."""
    paths = (out_dir / "index.html", out_dir / "index.txt")
    written: list[Path] = []
    try:
        with atomic_outputs(
            paths,
            error=IssueError,
            label=f"the build to {out_dir}",
            newline="\n",
            make_parents=True,
        ) as streams:
            for stream, content in zip(streams, (built.html, built.text), strict=True):
                stream.write(content)
            written = _write_media(built.composed.media, out_dir / MEDIA_FOLDER)
    except IssueError:
        for path in written:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (out_dir / MEDIA_FOLDER).rmdir()  # only when empty
        raise
    return paths


def _write_media(media: tuple[PublishedImage, ...], folder: Path) -> list[Path]:
    """Each file whole (a temporary name, then renamed); one already there is the same bytes
    (its name is their hash). Returns the files written."""
    written: list[Path] = []
    for image in media:
        path = folder / image.name
        if path.is_file() and path.stat().st_size == image.size:
            continue
        folder.mkdir(exist_ok=True)
        temp = folder / f".{image.name}.tmp"
        temp.write_bytes(image.data)
        os.replace(temp, path)
        written.append(path)
    return written


def _image_lines(composed: ComposedIssue) -> list[str]:
    """One line per published image: where it was named, its size before and after."""
    if not composed.images:
        return []
    published = sum(image.size for image in composed.media)
    lines = [f"Images:   {len(composed.media)}, {published:,} bytes at {MEDIA_PREFIX}"]
    seen: set[str] = set()
    for use in composed.images:
        image = use.image
        if image.name in seen:
            continue
        seen.add(image.name)
        lines.append(
            f"  {use.source}:{use.line}: {use.ref} {image.original_width}x"
            f"{image.original_height} {image.original_bytes:,} bytes -> {image.name} "
            f"{image.width}x{image.height} {image.size:,} bytes"
        )
    return lines


def report(built: Built, issue_dir: Path) -> list[str]:
    """The one-screen summary `mailer build` prints."""
    meta = built.composed.meta
    lines = [
        f"Issue #{meta.number}, {date_text(meta.date)}: {meta.subject}",
        f"  from {issue_dir}",
        "Sections:",
    ]
    labels = [(title or "(lead, untitled)", count) for title, count in built.sections]
    width = min(max(len(label) for label, _ in labels), 48)
    for label, count in labels:
        plural = "article" if count == 1 else "articles"
        lines.append(f"  {label[:width]:<{width}}  {count:>3} {plural}")
    total = sum(count for _, count in built.sections)
    share = 100 * built.html_bytes / GMAIL_CLIP_BYTES
    lines += [
        f"Articles: {total}",
        f"HTML:     {built.html_bytes:,} bytes ({share:.0f}% of Gmail's "
        f"{GMAIL_CLIP_BYTES // 1000} KB clipping limit)",
        f"Text:     {built.text_bytes:,} bytes",
    ]
    lines += _image_lines(built.composed)
    if built.warnings:
        lines.append(f"Warnings: {len(built.warnings)}")
        lines += [f"  ! {w}" for w in built.warnings]
    else:
        lines.append("Warnings: none")
    return lines
