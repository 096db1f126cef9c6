"""Compose reads a narrow Newsletter, not the whole Config; content_hash hashes exactly it."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

import mailer
from mailer.compose import compose_issue, slot
from mailer.compose.issue import load_issue
from mailer.compose.layout import layout_context
from mailer.compose.markdown import parse_issue
from mailer.compose.model import Newsletter
from mailer.compose.pipeline import content_hash
from mailer.config import Config
from tests.conftest import SAMPLE_ISSUE

SHOWN = ("name", "tagline", "copyright", "postal_address", "why_received", "base_url")
LATER = ("language",)  # hashed only when not the default, so older hashes still match


def _hash_before_newsletter(issue_dir: Path, config: Config) -> str:
    """content_hash as it was computed from the whole Config (what ledgers have recorded)."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("mailer", mailer.__version__.encode())
    for name, raw in load_issue(issue_dir).sources:
        add(f"issue/{name}", raw)
    layouts = config.layouts_dir
    for path in sorted(p for p in layouts.rglob("*") if p.is_file()):
        # The sign-up's confirmation layouts came later and are no part of an issue: a
        # ledger's layouts folder from before held none, and hashes as this one does.
        if path.relative_to(layouts).as_posix() in ("confirm.html.j2", "confirm.txt.j2"):
            continue
        add(f"layouts/{path.relative_to(layouts).as_posix()}", path.read_bytes())
    for key in SHOWN:
        add(f"config/{key}", str(getattr(config, key)).encode())
    add("slots", slot("unsubscribe_url").encode())
    return digest.hexdigest()


def test_from_config_takes_the_shown_fields_and_the_layouts(config: Config) -> None:
    newsletter = Newsletter.from_config(config)
    assert [f.name for f in dataclasses.fields(Newsletter)] == ["layouts_dir", *SHOWN, *LATER]
    assert dict(newsletter.shown()) == {key: getattr(config, key) for key in (*SHOWN, *LATER)}
    assert newsletter.layouts_dir == config.layouts_dir
    with pytest.raises(dataclasses.FrozenInstanceError):
        newsletter.name = "changed"  # type: ignore[misc]


def test_content_hash_is_unchanged_for_existing_ledgers(
    config: Config, newsletter: Newsletter, issue: Path
) -> None:
    for folder in (SAMPLE_ISSUE, issue):
        expected = _hash_before_newsletter(folder, config)
        assert compose_issue(folder, newsletter).content_hash == expected


def test_settings_outside_the_newsletter_leave_the_hash_alone(config: Config, issue: Path) -> None:
    base = compose_issue(issue, Newsletter.from_config(config)).content_hash
    other = dataclasses.replace(
        config, from_address="other@example.org", smtp_url="smtp://mail.example.org:587"
    )
    assert compose_issue(issue, Newsletter.from_config(other)).content_hash == base


@pytest.mark.parametrize("field", SHOWN)
def test_every_shown_field_changes_the_hash_and_reaches_the_layout(
    newsletter: Newsletter, issue: Path, field: str
) -> None:
    parsed = parse_issue(load_issue(issue))
    changed = dataclasses.replace(newsletter, **{field: "https://changed.example.org"})
    assert content_hash(parsed, changed) != content_hash(parsed, newsletter)
    context = layout_context(parsed, changed, web=False)
    assert context["newsletter"] == dict(changed.shown())
    assert context["newsletter"][field] == "https://changed.example.org"


def test_the_layouts_folder_is_hashed_by_its_files_not_its_path(
    newsletter: Newsletter, issue: Path, layouts: Path
) -> None:
    parsed = parse_issue(load_issue(issue))
    copied = dataclasses.replace(newsletter, layouts_dir=layouts)
    assert content_hash(parsed, copied) == content_hash(parsed, newsletter)
    (layouts / "extra.css").write_text("p { color: red }\n")
    assert content_hash(parsed, copied) != content_hash(parsed, newsletter)
