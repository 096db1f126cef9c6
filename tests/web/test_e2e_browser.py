"""End to end: `mailer send` delivers, a reader unsubscribes in Chromium, the next issue skips them.

Real components throughout: an aiosmtpd sink in this process, `mailer send` and `mailer serve`
as subprocesses, Debian's Chromium through Playwright, SQLite. Screenshots go to
test-artifacts/ (web-*.png).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from sqlalchemy import select

from mailer.send.sink import start_sink
from mailer.store import schema, subscribers
from mailer.store.db import open_store
from mailer.store.models import Issue, Subscriber, SubscriberEvent, SubscriberStatus
from tests.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, SAMPLE_ISSUE

from .test_web_serve import free_port, serving, wait_until_up

# Two `mailer send` processes (up to 120 s each), a server and Chromium.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

READERS = ["jane.doe@example.org", "bob@example.org", "carla@example.org"]


def received(maildir: Path) -> dict[str, EmailMessage]:
    """The messages in the sink's Maildir, by recipient."""
    out: dict[str, EmailMessage] = {}
    for path in sorted((maildir / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        out[str(message["To"])] = message
    return out


def mailer(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def next_issue(folder: Path) -> Path:
    """A new issue #26: the sample's snippets with a new number, date and subject."""
    target = folder / "026-june-2022"
    shutil.copytree(SAMPLE_ISSUE, target)
    manifest = target / "issue.toml"
    text = manifest.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^number = 25$", "number = 26", text)
    text = re.sub(r"(?m)^date = 2022-05-05$", "date = 2022-06-05", text)
    text = re.sub(
        r'(?m)^subject = ".*"$', 'subject = "Democracy in Uzbekistan #26: June 2022"', text
    )
    manifest.write_text(text, encoding="utf-8")
    return target


def watch_console(page: Page, problems: list[str]) -> None:
    def note(message: ConsoleMessage) -> None:
        # A blocked style or resource would show here as a CSP report.
        if "Content Security Policy" in message.text or "Refused" in message.text:
            problems.append(message.text)

    page.on("console", note)


def test_unsubscribe_in_a_browser_stops_the_next_issue(config_env: Path, tmp_path: Path) -> None:
    database = tmp_path / "list.db"
    store = open_store(f"sqlite:///{database}", check_schema=False)
    schema.upgrade(store.engine)
    for address in READERS:
        subscribers.add_subscriber(store, address)
    store.close()

    sink = start_sink("127.0.0.1", 0, tmp_path / "maildir")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        PYTHONPATH=str(REPO),
        MAILER_DATABASE_URL=f"sqlite:///{database}",
        MAILER_BASE_URL=base,
        MAILER_SMTP_URL=f"smtp://127.0.0.1:{sink.port}",
        MAILER_LAYOUTS_DIR=str(REPO / "layouts"),
    )
    try:
        mailer(["send", str(SAMPLE_ISSUE), "--yes"], config_env, env)
        first = received(tmp_path / "maildir")
        assert sorted(first) == sorted(READERS)
    finally:
        sink.stop()

    # The link, from the header a mail provider posts to and from the body a reader clicks.
    message = first["jane.doe@example.org"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header_urls = re.findall(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    html_part = message.get_body(("html",))
    assert html_part is not None
    body = html_part.get_content()
    body_urls = set(re.findall(r'href="([^"]*/unsubscribe/[^"]*)"', body))
    assert len(header_urls) == 1 and body_urls == set(header_urls)
    url = header_urls[0]
    assert url.startswith(f"{base}/unsubscribe/") and "@" not in url
    assert f'href="{base}/issues/025-may-2022"' in body  # "view in browser"

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with serving(config_env, env, port) as server, sync_playwright() as playwright:
        wait_until_up(f"{base}/healthz", server)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 720})
            watch_console(page, problems)
            answer = page.goto(url)
            assert answer is not None and answer.status == 200
            assert "j***@example.org" in page.inner_text("main")
            page.screenshot(path=str(ARTIFACTS / "web-1-confirm.png"), full_page=True)
            store = open_store(f"sqlite:///{database}")
            with store.session() as session:  # opening the page changed nothing
                jane = session.scalars(
                    select(Subscriber).where(Subscriber.email == "jane.doe@example.org")
                ).one()
                assert jane.status == SubscriberStatus.ACTIVE

            page.get_by_role("button", name="Unsubscribe").click()
            page.wait_for_load_state()
            assert page.url == url  # answered in place, no redirect
            text = page.inner_text("main")
            assert "You are unsubscribed" in text and "j***@example.org" in text
            assert page.get_by_role("button", name="Resubscribe").is_visible()
            page.screenshot(path=str(ARTIFACTS / "web-2-unsubscribed.png"), full_page=True)

            with store.session() as session:
                jane = session.get_one(Subscriber, jane.id)
                issue = session.scalars(select(Issue).where(Issue.number == 25)).one()
                assert (jane.status, jane.status_source, jane.status_issue_id) == (
                    SubscriberStatus.UNSUBSCRIBED,
                    "web",
                    issue.id,
                )
                history = session.scalars(
                    select(SubscriberEvent).where(SubscriberEvent.subscriber_id == jane.id)
                ).all()
                assert [(e.new_status, e.source) for e in history] == [("unsubscribed", "web")]
            store.close()

            # The archive and the issue's web version, as "view in browser" opens it.
            page.goto(f"{base}/")
            page.get_by_role("link", name="Democracy in Uzbekistan #25: May 2022").click()
            page.wait_for_load_state()
            assert page.url == f"{base}/issues/025-may-2022"
            assert "Study Tour to the USA" in page.inner_text("body")
            assert "jane" not in page.content()
            page.screenshot(path=str(ARTIFACTS / "web-3-issue.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 800})
            watch_console(phone, problems)
            phone.goto(url)
            assert "You are already unsubscribed" in phone.inner_text("main")
            phone.screenshot(path=str(ARTIFACTS / "web-4-phone-already.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []

    # The next issue no longer reaches her.
    sink = start_sink("127.0.0.1", 0, tmp_path / "maildir2")
    env["MAILER_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
    try:
        mailer(["send", str(next_issue(tmp_path)), "--yes"], config_env, env)
        second = received(tmp_path / "maildir2")
    finally:
        sink.stop()
    assert sorted(second) == ["bob@example.org", "carla@example.org"]
    assert all("#26" in str(m["Subject"]) for m in second.values())


def test_a_bounced_reader_and_a_failed_send_in_a_browser(config_env: Path, tmp_path: Path) -> None:
    """A bounced reader's old link unsubscribes but offers no Resubscribe; an issue whose send
    failed before its first message is not in the archive."""
    from mailer.config import load_config
    from mailer.tokens import make_token

    database = tmp_path / "list.db"
    store = open_store(f"sqlite:///{database}", check_schema=False)
    schema.upgrade(store.engine)
    subscribers.add_subscriber(store, "jane.doe@example.org")  # whom the send fails to reach
    reader = subscribers.add_subscriber(store, "bounced.reader@example.org")
    subscribers.set_status(store, reader.email, SubscriberStatus.BOUNCED, source="bounce")
    store.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        PYTHONPATH=str(REPO),
        MAILER_DATABASE_URL=f"sqlite:///{database}",
        MAILER_BASE_URL=base,
        MAILER_SMTP_URL=f"smtp://127.0.0.1:{free_port()}",  # nothing listens: refused
        MAILER_LAYOUTS_DIR=str(REPO / "layouts"),
    )
    failed = subprocess.run(
        [sys.executable, "-m", "mailer", "send", str(SAMPLE_ISSUE), "--yes"],
        cwd=config_env,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1 and "cannot connect" in failed.stderr
    url = f"{base}/unsubscribe/{make_token(load_config().secret_keys(), reader.uid, 24)}"

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with serving(config_env, env, port) as server, sync_playwright() as playwright:
        wait_until_up(f"{base}/healthz", server)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 720})
            watch_console(page, problems)
            page.goto(url)
            page.get_by_role("button", name="Unsubscribe").click()
            page.wait_for_load_state()
            assert "You are unsubscribed" in page.inner_text("main")
            assert page.get_by_role("button", name="Resubscribe").count() == 0
            page.screenshot(path=str(ARTIFACTS / "web-5-bounced-unsubscribed.png"), full_page=True)
            page.goto(url)
            assert "You are already unsubscribed" in page.inner_text("main")
            assert page.get_by_role("button", name="Resubscribe").count() == 0

            page.goto(f"{base}/")
            assert "No issue has been sent yet." in page.inner_text("main")
            assert (
                page.get_by_role("link", name="Democracy in Uzbekistan #25: May 2022").count() == 0
            )
            page.screenshot(path=str(ARTIFACTS / "web-6-archive-after-failed-send.png"))
            answer = page.goto(f"{base}/issues/025-may-2022")
            assert answer is not None and answer.status == 404
        finally:
            browser.close()
    assert problems == []
