"""The archive: sent issues newest first, their web versions, and the Atom feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from starlette.testclient import TestClient

from mailer.config import Config
from mailer.store.db import Store
from mailer.store.models import DeliveryStatus, IssueState

from .helpers import add_deliveries, add_issue

ATOM = "{http://www.w3.org/2005/Atom}"


def test_empty_archive(client: TestClient, store: Store) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "No issue has been sent yet." in page.text
    feed = ET.fromstring(client.get("/feed.xml").content)
    assert feed.findall(f"{ATOM}entry") == []


def test_archive_lists_sent_issues_newest_first(client: TestClient, store: Store) -> None:
    add_issue(store, 24, subject="April news", date="2022-04-05")
    june = add_issue(store, 26, subject="June news", date="2022-06-05", state=IssueState.SENDING)
    add_deliveries(store, june, DeliveryStatus.SENT, DeliveryStatus.PENDING)  # under way
    add_issue(store, 25, subject="May news", date="2022-05-05")
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    links = re.findall(r'<a href="(issues/[^"]+)">([^<]+)</a>', page.text)
    assert links == [
        ("issues/026-issue", "June news"),
        ("issues/025-issue", "May news"),
        ("issues/024-issue", "April news"),
    ]
    assert "Newsletter #25 · May 5, 2022" in page.text
    assert 'href="feed.xml"' in page.text


def test_issue_page_serves_the_recorded_web_version(client: TestClient, store: Store) -> None:
    html = '<!doctype html><html><body><p style="color:#123">Hello <b>readers</b></p></body></html>'
    add_issue(store, 25, web_html=html)
    page = client.get("/issues/025-issue")
    assert page.status_code == 200
    assert page.text == html
    csp = page.headers["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in csp and "script" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "sandbox" in csp and "allow-scripts" not in csp and "allow-same-origin" not in csp
    assert client.head("/issues/025-issue").status_code == 200


def test_unknown_issue_is_the_one_404(client: TestClient, store: Store) -> None:
    add_issue(store, 25)
    reference = client.get("/no-such-page")
    for path in ("/issues/026-issue", "/issues/025-ISSUE", "/issues/..%2F..%2Fetc", "/issues/"):
        answer = client.get(path)
        assert (answer.status_code, answer.text) == (404, reference.text)


def test_feed_is_valid_atom_with_absolute_links(
    client: TestClient, store: Store, web_config: Config
) -> None:
    add_issue(store, 24, subject='April <news> & "more"', date="2022-04-05")
    add_issue(store, 25, subject="May ]]> news", date="2022-05-05")
    answer = client.get("/feed.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = ET.fromstring(answer.content)  # raises on invalid XML
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}title") == web_config.name
    assert feed.findtext(f"{ATOM}id") == f"{web_config.base_url}/"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", feed.findtext(f"{ATOM}updated") or "")
    self_link = feed.find(f"{ATOM}link[@rel='self']")
    assert self_link is not None and self_link.get("href") == f"{web_config.base_url}/feed.xml"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "May ]]> news",
        'April <news> & "more"',
    ]
    for entry, slug in zip(entries, ["025-issue", "024-issue"], strict=True):
        link = entry.find(f"{ATOM}link")
        assert link is not None
        assert link.get("href") == f"{web_config.base_url}/issues/{slug}"
        assert entry.findtext(f"{ATOM}id") == f"{web_config.base_url}/issues/{slug}"
        assert entry.findtext(f"{ATOM}updated")
    # The URLs in the feed are the ones the app answers.
    assert client.get(
        f"/issues/{entries[0].findtext(f'{ATOM}id', '').rsplit('/', 1)[1]}"
    ).is_success
