"""Rules for every response: security headers, methods, no address in any URL, health."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from mailer.config import Config
from mailer.store.db import Store
from mailer.store.models import Subscriber
from mailer.web import create_app

from .helpers import add_issue, add_subscriber, token_for

REQUIRED = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def assert_secure(response: httpx2.Response) -> None:
    headers = response.headers
    for name, value in REQUIRED.items():
        assert headers.get(name) == value, (name, response)
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "script-src" not in csp and "'unsafe-eval'" not in csp


def sample(store: Store, config: Config) -> tuple[Subscriber, str]:
    add_issue(store, 25)
    jane = add_subscriber(store, "jane@example.org")
    return jane, token_for(config, jane)


def test_security_headers_on_every_route_and_error(
    client: TestClient, store: Store, web_config: Config
) -> None:
    _, token = sample(store, web_config)
    requests = [
        ("GET", "/"),
        ("HEAD", "/"),
        ("GET", "/issues/025-issue"),
        ("GET", "/issues/nope"),
        ("GET", "/feed.xml"),
        ("GET", "/healthz"),
        ("GET", f"/unsubscribe/{token}"),
        ("HEAD", f"/unsubscribe/{token}"),
        ("GET", "/unsubscribe/garbage"),
        ("POST", f"/unsubscribe/{token}"),
        ("POST", f"/resubscribe/{token}"),
        ("GET", "/no/such/page"),
        ("DELETE", "/"),
        ("PUT", f"/unsubscribe/{token}"),
        ("OPTIONS", "/feed.xml"),
    ]
    for method, path in requests:
        assert_secure(client.request(method, path))
    page = client.get("/")
    # The app's own pages: only their one inline stylesheet, by hash; no script, no style=.
    policy = page.headers["Content-Security-Policy"]
    [css] = re.findall(r"<style>(.*?)</style>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy
    assert "form-action 'self'" in policy and "unsafe-inline" not in policy
    for text in (page.text, client.get(f"/unsubscribe/{token}").text):
        assert "<script" not in text and " style=" not in text


def test_a_crash_is_a_plain_500_with_the_headers(
    web_config: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom: secret detail")

    monkeypatch.setattr("mailer.web.archive.archived_issues", broken)
    with TestClient(create_app(web_config), raise_server_exceptions=False) as client:
        answer = client.get("/")
    assert answer.status_code == 500
    assert "Something went wrong" in answer.text and "secret detail" not in answer.text
    assert_secure(answer)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/", "GET, HEAD"),
        ("/issues/025-issue", "GET, HEAD"),
        ("/feed.xml", "GET, HEAD"),
        ("/healthz", "GET, HEAD"),
        ("/unsubscribe/{token}", "GET, HEAD, POST"),
        ("/resubscribe/{token}", "POST"),
    ],
)
def test_other_methods_are_405(
    client: TestClient, store: Store, web_config: Config, path: str, allowed: str
) -> None:
    _, token = sample(store, web_config)
    url = path.format(token=token)
    methods = {"PUT", "DELETE", "PATCH", "OPTIONS", "POST", "GET"} - set(allowed.split(", "))
    for method in sorted(methods):
        answer = client.request(method, url)
        assert answer.status_code == 405, (method, url)
        assert sorted(answer.headers["Allow"].split(", ")) == sorted(allowed.split(", "))
        assert_secure(answer)
    assert client.get(f"/unsubscribe/{token}").text.count("j***@example.org") == 1


def test_no_address_in_any_url_of_any_page(
    client: TestClient, store: Store, web_config: Config
) -> None:
    _, token = sample(store, web_config)
    pages = [
        client.get("/"),
        client.get("/feed.xml"),
        client.get(f"/unsubscribe/{token}"),
        client.post(f"/unsubscribe/{token}", data={"via": "page"}),
        client.get(f"/unsubscribe/{token}"),
        client.post(f"/resubscribe/{token}"),
        client.get("/unsubscribe/garbage"),
        client.put("/"),
    ]
    urls = []
    for page in pages:
        urls += re.findall(r'(?:href|action|src)="([^"]*)"', page.text)
        urls += [page.headers.get("location", "")]
    assert any(u.startswith("../resubscribe/") for u in urls)
    for url in urls:
        assert "@" not in url and "%40" not in url.upper() and "jane" not in url


def test_healthz(client: TestClient, store: Store) -> None:
    answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok")
    assert answer.headers["Cache-Control"] == "no-store"


def test_healthz_503_and_pages_503_when_the_database_is_gone(
    config_env: Path, web_config: Config
) -> None:
    import dataclasses

    from mailer.store import schema
    from mailer.store.db import open_store

    folder = config_env / "db"
    folder.mkdir()
    config = dataclasses.replace(web_config, database_url=f"sqlite:///{folder / 'list.db'}")
    store = open_store(config.database_url, check_schema=False)
    schema.upgrade(store.engine)
    jane = add_subscriber(store, "jane@example.org")
    store.close()
    app = create_app(config)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        app.state.web.store.engine.dispose()  # drop pooled connections, as a restarted DB would
        shutil.move(folder, config_env / "gone")
        answer = client.get("/healthz")
        assert (answer.status_code, answer.text) == (503, "database unavailable")
        assert_secure(answer)
        url = f"/unsubscribe/{token_for(config, jane)}"
        answer = client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
        assert "Nothing was changed" in answer.text
        assert client.get("/").status_code == 503
        shutil.move(config_env / "gone", folder)
        app.state.web.store.engine.dispose()
        assert client.get("/healthz").status_code == 200
        assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_hsts_only_when_the_public_url_is_https(web_config: Config, store: Store) -> None:
    import dataclasses

    for base_url, expected in [("https://news.example.org", "max-age=31536000"), (None, None)]:
        config = dataclasses.replace(web_config, base_url=base_url or web_config.base_url)
        with TestClient(create_app(config)) as client:
            answer = client.get("/no-such-page")
        assert answer.headers.get("Strict-Transport-Security") == expected
