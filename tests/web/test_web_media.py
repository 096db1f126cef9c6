"""`mailer send` stores the issue's published images; `mailer serve` answers /media/NAME from
the database, and its archive page carries the contents list's anchors.

The send is the real command (a Maildir transport), the app the real one (Starlette's
TestClient), on SQLite or PostgreSQL.
"""

from __future__ import annotations

import email
import mailbox
import random
import shutil
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from lxml import html as lxml_html
from sqlalchemy import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mailer.cli import app
from mailer.compose import compose_issue
from mailer.compose.model import Newsletter
from mailer.config import load_config
from mailer.store.db import Store
from mailer.store.models import Media
from mailer.web import create_app
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.photos import camera_photo

from .helpers import add_subscriber

pytestmark = pytest.mark.db

BASE = "https://news.example.org"
SMALL_ISSUE = REPO / "tests" / "compose" / "fixtures" / "007-spring-2022"


@pytest.fixture
def send_env(config_env: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`mailer send` into a Maildir, with an https base_url; returns the Maildir."""
    maildir = config_env / "maildir"
    monkeypatch.setenv("MAILER_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("MAILER_LAYOUTS_DIR", str(REPO / "layouts"))
    monkeypatch.setenv("MAILER_SMTP_URL", f"maildir:{maildir}")
    monkeypatch.setenv("MAILER_BASE_URL", BASE)
    return maildir


def send(issue: Path) -> None:
    result = CliRunner().invoke(app, ["send", str(issue), "--yes"])
    assert result.exit_code == 0, result.output


def messages(maildir: Path) -> list[EmailMessage]:
    out = []
    for raw in mailbox.Maildir(maildir, create=False):
        message = email.message_from_bytes(raw.as_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


def issue_with_photo(folder: Path, rng: random.Random) -> Path:
    issue = folder / SMALL_ISSUE.name
    shutil.copytree(SMALL_ISSUE, issue)
    camera_photo(issue / "photo.jpg", rng, (2400, 1800))
    article = issue / "appointment.md"
    text = article.read_text(encoding="utf-8")
    article.write_text(text.rstrip("\n") + "\n\n![The new ambassador](photo.jpg)\n")
    return issue


def test_a_send_stores_the_images_and_serve_answers_them(
    send_env: Path, store: Store, tmp_path: Path, rng: random.Random
) -> None:
    issue = issue_with_photo(tmp_path, rng)
    add_subscriber(store, "jane@example.org")
    send(issue)

    (message,) = messages(send_env)
    # Never attached: the message is its text and HTML parts, nothing else.
    assert [p.get_content_type() for p in message.walk() if not p.is_multipart()] == [
        "text/plain",
        "text/html",
    ]
    html_part = message.get_body(("html",))
    assert html_part is not None
    doc = lxml_html.fromstring(html_part.get_content())
    (img,) = doc.xpath("//img[@alt='The new ambassador']")
    src = img.get("src")
    assert src.startswith(f"{BASE}/media/") and src.endswith(".jpg")
    assert (img.get("width"), img.get("height")) == ("568", "758")  # upright: portrait
    name = src.rsplit("/", 1)[1]
    expected = compose_issue(issue, Newsletter.from_config(load_config())).media[0]
    assert expected.name == name

    with TestClient(create_app(load_config()), raise_server_exceptions=False) as client:
        answer = client.get(f"/media/{name}")
        assert answer.status_code == 200
        assert answer.content == expected.data
        assert answer.headers["content-type"] == "image/jpeg"
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert client.head(f"/media/{name}").status_code == 200
        stem = name.removesuffix(".jpg")
        for wrong in (
            "0" * 32 + ".jpg",  # well-formed, never stored
            stem + ".png",  # the other type
            stem.upper() + ".jpg",  # canonical names only
            stem + ".jpeg",
            stem + ".JPG",
            stem[:-1] + ".jpg",
            name + "/",
            f"..%2F{name}",
        ):
            assert client.get(f"/media/{wrong}").status_code == 404, wrong

    # A second run (nothing left to send) stores nothing twice.
    send(issue)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Media)) == 1


def test_a_test_copy_stores_its_images_too(
    send_env: Path, store: Store, tmp_path: Path, rng: random.Random
) -> None:
    issue = issue_with_photo(tmp_path, rng)
    result = CliRunner().invoke(app, ["send", str(issue), "--to", "editor@example.org"])
    assert result.exit_code == 0, result.output
    with store.session() as session:
        (stored,) = session.scalars(select(Media)).all()
        assert stored.issue_slug == issue.name and stored.content_type == "image/jpeg"


def test_a_dry_run_stores_nothing(
    send_env: Path, store: Store, tmp_path: Path, rng: random.Random
) -> None:
    issue = issue_with_photo(tmp_path, rng)
    add_subscriber(store, "jane@example.org")
    result = CliRunner().invoke(app, ["send", str(issue), "--dry-run"])
    assert result.exit_code == 0, result.output
    with store.session() as session:
        assert session.scalars(select(Media)).all() == []


def test_the_archive_page_carries_every_contents_anchor(
    send_env: Path, store: Store, tmp_path: Path
) -> None:
    add_subscriber(store, "jane@example.org")
    send(SAMPLE_ISSUE)
    (message,) = messages(send_env)
    html_part = message.get_body(("html",))
    assert html_part is not None
    links = lxml_html.fromstring(html_part.get_content()).xpath("//div[@class='toc']//a/@href")
    assert len(links) == 44
    page_url = f"{BASE}/issues/{SAMPLE_ISSUE.name}"
    assert {link.split("#")[0] for link in links} == {page_url}
    anchors = [link.split("#", 1)[1] for link in links]

    with TestClient(create_app(load_config()), raise_server_exceptions=False) as client:
        archive = lxml_html.fromstring(client.get("/").text)
        (href,) = archive.xpath(f"//a[contains(@href, '{SAMPLE_ISSUE.name}')]/@href")
        answer = client.get(href.removeprefix(BASE))
        assert answer.status_code == 200
    doc = lxml_html.fromstring(answer.text)
    for anchor in anchors:
        (target,) = doc.xpath(f"//*[@id='{anchor}']")
        assert "title" in target.get("class")
    assert doc.xpath("//div[@class='toc']//a/@href") == [f"#{a}" for a in anchors]
