"""The preferences link of every issue's footer: GET shows, POST renames, Unsubscribe leaves
through the unsubscribe link's own endpoint."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from mailer.config import Config
from mailer.store.db import Store
from mailer.store.models import SubscriberStatus
from mailer.tokens import make_preferences_token

from .helpers import add_issue, add_subscriber, events, reload, token_for
from .test_web_http import assert_secure


def test_preferences_show_then_save_the_name(
    client: TestClient, web_config: Config, store: Store
) -> None:
    add_issue(store, 25)
    jane = add_subscriber(store, "jane.doe@example.org")
    url = f"/preferences/{make_preferences_token(web_config.secret_keys(), jane.uid, 25)}"
    page = client.get(url)
    assert page.status_code == 200 and client.head(url).status_code == 200
    assert_secure(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert "j***@example.org" in page.text and "jane.doe" not in page.text
    assert 'name="name" value=""' in page.text
    [action] = re.findall(r'<form method="post" action="([^"]+)">', page.text)
    assert action == f"../unsubscribe/{token_for(web_config, jane, 25)}"
    saved = client.post(url, data={"name": "  Jane\r\nDoe  "})
    assert saved.status_code == 200 and "Your name is saved" in saved.text
    assert reload(store, jane).name == "Jane Doe"  # one line, trimmed
    assert 'value="Jane Doe"' in client.get(url).text
    # The page's Unsubscribe button is the unsubscribe link's own, recorded as the page's.
    left = client.post(action.replace("..", ""), data={"via": "page"})
    assert left.status_code == 200 and "You are unsubscribed" in left.text
    assert [(e.new_status, e.source) for e in events(store, jane)] == [("unsubscribed", "web")]
    after = client.get(url)
    assert "this address is not subscribed" in after.text
    assert "../unsubscribe/" not in after.text


def test_preferences_of_a_bounced_address_may_still_leave(
    client: TestClient, web_config: Config, store: Store
) -> None:
    bob = add_subscriber(store, "bob@example.org", SubscriberStatus.BOUNCED)
    page = client.get(
        f"/preferences/{make_preferences_token(web_config.secret_keys(), bob.uid, 3)}"
    )
    assert "../unsubscribe/" in page.text


def test_a_forged_or_foreign_token_is_the_one_404(
    client: TestClient, web_config: Config, store: Store
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    unknown = client.get("/preferences/garbage")
    assert unknown.status_code == 404
    keys = web_config.secret_keys()
    good = make_preferences_token(keys, jane.uid, 25)
    for token in (
        token_for(web_config, jane),  # an unsubscribe token is no preferences token
        make_preferences_token([b"x" * 32], jane.uid, 25),
        make_preferences_token(keys, "0" * 32, 25),  # nobody's uid
        good[:-1] + ("A" if good[-1] != "A" else "B"),
    ):
        for method in ("GET", "POST"):
            page = client.request(method, f"/preferences/{token}", data={"name": "Hacked"})
            assert page.status_code == 404 and page.text == unknown.text
    assert reload(store, jane).name == ""
    # ... and a preferences token unsubscribes nobody.
    assert client.post(f"/unsubscribe/{good}").status_code == 404
