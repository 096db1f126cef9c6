"""End to end in Chromium: a person signs up on a phone-sized and a desktop-sized page,
receives the confirmation email from an aiosmtpd sink, opens the link, presses Confirm and is
an active subscriber; the README's form embedded on another site; the form in a frame.

Real components: `mailer serve` as a subprocess (with its outbox thread), an aiosmtpd sink
in this process, Debian's Chromium through Playwright, SQLite. Screenshots go to
test-artifacts/ (signup-*.png).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import select

from mailer.send.sink import start_sink
from mailer.store import schema
from mailer.store.consent import consent_records
from mailer.store.db import open_store
from mailer.store.models import Subscriber
from tests.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO

from .test_e2e_browser import watch_console
from .test_web_serve import free_port, serving, wait_until_up
from .test_web_signup_serve import confirm_link, wait_for_mail

# A `mailer serve`, Chromium, and a few emails through the outbox thread.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """Another website (another origin: another port) serving ``folder``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass

    server = Quiet(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sign_up_in(page: Page, base: str, address: str, name: str, shot: str) -> None:
    answer = page.goto(f"{base}/subscribe")
    assert answer is not None and answer.status == 200
    assert "Subscribe to Democracy in Uzbekistan" in page.inner_text("main")
    # The honeypot is there for bots, off-screen for people.
    box = page.locator("#website").bounding_box()
    assert box is not None and box["x"] + box["width"] < 0
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Name").fill(name)
    page.screenshot(path=str(ARTIFACTS / f"signup-{shot}-1-form.png"), full_page=True)
    page.wait_for_timeout(2200)  # a person takes longer than the bots' 2 s to type
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()
    text = page.inner_text("main")
    assert "Check your inbox" in text and address in text
    page.screenshot(path=str(ARTIFACTS / f"signup-{shot}-2-check-inbox.png"), full_page=True)


def confirm_in(page: Page, url: str, shot: str) -> None:
    answer = page.goto(url)
    assert answer is not None and answer.status == 200
    assert "Confirm your subscription" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / f"signup-{shot}-3-confirm.png"), full_page=True)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert "Welcome to Democracy in Uzbekistan" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / f"signup-{shot}-4-welcome.png"), full_page=True)
    page.get_by_role("link", name="archive").first.click()
    page.wait_for_load_state()
    assert "Archive" in page.inner_text("main")


def test_people_sign_up_and_confirm_in_chromium(config_env: Path, tmp_path: Path) -> None:
    database = tmp_path / "list.db"
    store = open_store(f"sqlite:///{database}", check_schema=False)
    schema.upgrade(store.engine)
    store.close()
    maildir = tmp_path / "maildir"
    sink = start_sink("127.0.0.1", 0, maildir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    embed = tmp_path / "site"
    embed.mkdir()
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    try:
        with static_site(embed) as site:
            env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
            env.update(
                PYTHONPATH=str(REPO),
                MAILER_DATABASE_URL=f"sqlite:///{database}",
                MAILER_BASE_URL=base,
                MAILER_SMTP_URL=f"smtp://127.0.0.1:{sink.port}",
                MAILER_LAYOUTS_DIR=str(REPO / "layouts"),
                MAILER_SIGNUP_FRAME_ANCESTORS=site,
            )
            (embed / "join.html").write_text(_embedded_form(base), encoding="utf-8")
            (embed / "framed.html").write_text(_frames(base), encoding="utf-8")
            with serving(config_env, env, port) as server, sync_playwright() as playwright:
                wait_until_up(f"{base}/healthz", server)
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    _people(browser, base, maildir, problems)
                    _embedded(browser, site, base, maildir, problems)
                    _framed(browser, site, base)
                finally:
                    browser.close()
    finally:
        sink.stop()
    assert problems == []
    store = open_store(f"sqlite:///{database}")
    with store.session() as session:
        found = {s.email: s for s in session.scalars(select(Subscriber))}
    assert sorted(found) == ["carla@example.org", "jane.doe@example.org", "li.wei@example.org"]
    assert {(s.status, s.status_source) for s in found.values()} == {("active", "signup")}
    assert found["li.wei@example.org"].name == "Li Wei"
    [record] = consent_records(store, found["carla@example.org"].id)
    assert record.form == site  # the embedding site's origin
    [record] = consent_records(store, found["jane.doe@example.org"].id)
    assert (record.form, record.ip) == ("/subscribe", "127.0.0.1")
    store.close()


def _people(browser: Browser, base: str, maildir: Path, problems: list[str]) -> None:
    for n, (viewport, shot, address, name) in enumerate(
        [
            (PHONE, "phone", "li.wei@example.org", "Li Wei"),
            (DESKTOP, "desktop", "jane.doe@example.org", "Jane Doe"),
        ],
        start=1,
    ):
        page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
        watch_console(page, problems)
        sign_up_in(page, base, address, name, shot)
        # Within seconds: the outbox thread was woken by the sign-up.
        started = time.monotonic()
        mails = wait_for_mail(maildir, n, timeout=30)
        assert time.monotonic() - started < 10
        mail = next(m for m in mails if str(m["To"]) == address)
        assert name not in mail.as_string()  # nothing typed into the form is in the email
        confirm_in(page, confirm_link(mail), shot)
        page.close()


def _embedded_form(base: str) -> str:
    """The README's snippet on another website."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Our blog</title></head>
<body><h1>Our blog</h1>
<form method="post" action="{base}/subscribe">
  <label>Email address <input type="email" name="email" required></label>
  <label>Name (optional) <input type="text" name="name"></label>
  <button type="submit">Subscribe</button>
</form></body></html>
"""


def _embedded(browser: Browser, site: str, base: str, maildir: Path, problems: list[str]) -> None:
    page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    watch_console(page, problems)
    page.goto(f"{site}/join.html")
    page.get_by_label("Email address").fill("carla@example.org")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()
    # mailer's own page, filled in, asking for one more press; nothing was sent yet.
    assert page.url == f"{base}/subscribe"
    assert "One more step" in page.inner_text("main")
    assert page.get_by_label("Email address").input_value() == "carla@example.org"
    page.screenshot(path=str(ARTIFACTS / "signup-embedded-1-again.png"), full_page=True)
    time.sleep(1.5)
    assert len(list((maildir / "new").iterdir())) == 2  # the two people's emails only
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()
    assert "Check your inbox" in page.inner_text("main")
    mails = wait_for_mail(maildir, 3, timeout=30)
    mail = next(m for m in mails if str(m["To"]) == "carla@example.org")
    confirm_in(page, confirm_link(mail), "embedded")
    page.close()


def _frames(base: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Framed</title></head>
<body><iframe id="form" src="{base}/subscribe" style="width:600px;height:700px"></iframe>
<iframe id="archive" src="{base}/" style="width:600px;height:300px"></iframe></body></html>
"""


def _framed(browser: Browser, site: str, base: str) -> None:
    """The listed site may show the form in a frame; no page but the form may be framed."""
    page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    page.goto(f"{site}/framed.html")
    form = page.frame_locator("#form")
    assert form.get_by_role("button", name="Subscribe").is_visible()
    page.wait_for_timeout(500)
    urls = [frame.url for frame in page.frames]
    assert f"{base}/subscribe" in urls
    assert f"{base}/" not in urls  # the archive's frame was refused (an error page instead)
    assert any(base in text for text in refused), refused
    page.screenshot(path=str(ARTIFACTS / "signup-framed.png"), full_page=True)
    page.close()
