"""Unsubscribe links: GET shows, POST acts (one-click or button), nothing else changes state."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from mailer.config import Config
from mailer.store import db
from mailer.store.db import Store
from mailer.store.models import Subscriber, SubscriberStatus
from mailer.store.status import change_status
from mailer.store.subscribers import forget, set_status
from mailer.tokens import make_token
from mailer.web import create_app
from mailer.web.masking import mask_address

from .helpers import (
    add_issue,
    add_subscriber,
    count_events,
    events,
    raw_subscriber,
    reload,
    token_for,
)

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def multipart(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with text fields only, as mail providers send it."""
    boundary = "----mailer" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def moved_to_another_issue(config: Config, uid: str, token: str) -> str:
    """``token``'s signature on the body of a token for another issue."""
    other = base64.urlsafe_b64decode(make_token(config.secret_keys(), uid, 26) + "==")
    mac = base64.urlsafe_b64decode(token + "==")[21:]
    return base64.urlsafe_b64encode(other[:21] + mac).rstrip(b"=").decode()


def test_get_and_head_show_the_page_and_change_nothing(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane.doe@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane)}"
    for _ in range(5):  # a link scanner fetching again and again
        page = client.get(url)
        assert page.status_code == 200
        assert client.head(url).status_code == 200
    assert web_config.name in page.text
    assert "j***@example.org" in page.text
    assert "jane.doe" not in page.text
    assert re.search(
        r'<form method="post">\s*<input type="hidden" name="via" value="page">', page.text
    )
    assert ">Unsubscribe</button>" in page.text
    assert page.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert page.headers["Cache-Control"] == "no-store"
    assert reload(store, jane).status == SubscriberStatus.ACTIVE
    assert count_events(store) == 0


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_at_once(
    client: TestClient, store: Store, web_config: Config, encoding: str
) -> None:
    issue = add_issue(store, 25)
    jane = add_subscriber(store, "jane@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane, 25)}"
    before = dt.datetime.now(dt.UTC)
    if encoding == "urlencoded":
        answer = client.post(url, data=ONE_CLICK)
    else:
        body, headers = multipart(ONE_CLICK)
        answer = client.post(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert "You are unsubscribed" in answer.text
    assert ">Resubscribe</button>" in answer.text
    assert "location" not in answer.headers and "set-cookie" not in answer.headers
    saved = reload(store, jane)
    assert saved.status == SubscriberStatus.UNSUBSCRIBED
    assert saved.status_source == "one-click"
    assert saved.status_issue_id == issue.id
    changed_at = saved.status_changed_at.replace(tzinfo=saved.status_changed_at.tzinfo or dt.UTC)
    assert before - dt.timedelta(seconds=1) <= changed_at <= dt.datetime.now(dt.UTC)
    [event] = events(store, jane)
    assert (event.old_status, event.new_status, event.source, event.issue_id) == (
        "active",
        "unsubscribed",
        "one-click",
        issue.id,
    )


def test_page_button_is_recorded_as_web(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane, 7)}"  # issue 7 was never recorded
    answer = client.post(url, data={"via": "page"})
    assert answer.status_code == 200
    saved = reload(store, jane)
    assert (saved.status, saved.status_source, saved.status_issue_id) == (
        SubscriberStatus.UNSUBSCRIBED,
        "web",
        None,
    )
    assert "#7" in saved.status_reason


def test_post_is_idempotent_and_keeps_the_first_record(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane)}"
    assert client.post(url, data=ONE_CLICK).status_code == 200
    first = reload(store, jane)
    second = client.post(url, data={"via": "page"})
    assert second.status_code == 200
    assert "You are unsubscribed" in second.text
    again = reload(store, jane)
    assert (again.status_source, again.status_changed_at) == ("one-click", first.status_changed_at)
    assert len(events(store, jane)) == 1
    # Once unsubscribed, the page says so and offers the undo, still changing nothing.
    page = client.get(url)
    assert "You are already unsubscribed" in page.text
    assert ">Resubscribe</button>" in page.text
    assert len(events(store, jane)) == 1


def test_concurrent_posts_record_one_unsubscribe(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane)}"
    codes: list[int] = []

    def post() -> None:
        codes.append(client.post(url, data=ONE_CLICK).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    assert len(events(store, jane)) == 1


def test_post_without_body_or_with_odd_bodies_still_unsubscribes(
    client: TestClient, store: Store, web_config: Config
) -> None:
    for i, (body, ctype) in enumerate(
        [
            (b"", ""),
            (b'{"List-Unsubscribe": "One-Click"}', "application/json"),
            (b"--nope\r\ngarbage", "multipart/form-data; boundary=x"),
        ]
    ):
        person = add_subscriber(store, f"p{i}@example.org")
        headers = {"Content-Type": ctype} if ctype else {}
        url = f"/unsubscribe/{token_for(web_config, person)}"
        assert client.post(url, content=body, headers=headers).status_code == 200
        assert reload(store, person).status_source == "one-click"


def test_oversized_body_changes_nothing(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane)}"
    answer = client.post(url, content=b"x" * 100_000, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 413
    assert reload(store, jane).status == SubscriberStatus.ACTIVE


def test_resubscribe_undoes_a_link_unsubscribe(
    client: TestClient, store: Store, web_config: Config
) -> None:
    issue = add_issue(store, 25)
    jane = add_subscriber(store, "jane@example.org")
    token = token_for(web_config, jane, 25)
    done = client.post(f"/unsubscribe/{token}", data={"via": "page"})
    assert f'action="../resubscribe/{token}"' in done.text
    back = client.post(f"/resubscribe/{token}")
    assert back.status_code == 200
    assert "You are subscribed again" in back.text
    assert f'action="../unsubscribe/{token}"' in back.text
    saved = reload(store, jane)
    assert (saved.status, saved.status_source, saved.status_issue_id) == (
        SubscriberStatus.ACTIVE,
        "web-resubscribe",
        issue.id,
    )
    assert client.post(f"/resubscribe/{token}").status_code == 200  # idempotent
    assert [e.new_status for e in events(store, jane)] == ["unsubscribed", "active"]
    # ... and the link unsubscribes again.
    client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    assert reload(store, jane).status == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("status", "source"),
    [
        (SubscriberStatus.UNSUBSCRIBED, "cli"),
        (SubscriberStatus.BOUNCED, "bounce"),
        (SubscriberStatus.COMPLAINED, "complaint"),
    ],
)
def test_resubscribe_refuses_what_a_link_did_not_do(
    client: TestClient, store: Store, web_config: Config, status: SubscriberStatus, source: str
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    with store.session() as session, session.begin():
        row = session.get(Subscriber, jane.id)
        assert row is not None
        change_status(session, row, status, source=source)
    token = token_for(web_config, jane)
    if status == SubscriberStatus.UNSUBSCRIBED:
        assert ">Resubscribe</button>" not in client.get(f"/unsubscribe/{token}").text
    answer = client.post(f"/resubscribe/{token}")
    assert answer.status_code == 409
    assert "cannot be resubscribed here" in answer.text
    assert reload(store, jane).status == status
    assert len(events(store, jane)) == 1


def test_an_old_link_cannot_make_a_bounced_address_active(
    client: TestClient, store: Store, web_config: Config
) -> None:
    """The page, its Unsubscribe button, then Resubscribe: the bounce must stay in force."""
    add_issue(store, 25)
    bounced = add_subscriber(store, "b@example.org", SubscriberStatus.BOUNCED)
    token = token_for(web_config, bounced, 25)
    assert ">Unsubscribe</button>" in client.get(f"/unsubscribe/{token}").text
    done = client.post(f"/unsubscribe/{token}", data={"via": "page"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert ">Resubscribe</button>" not in done.text
    assert ">Resubscribe</button>" not in client.get(f"/unsubscribe/{token}").text
    answer = client.post(f"/resubscribe/{token}")
    assert answer.status_code == 409 and "cannot be resubscribed here" in answer.text
    assert reload(store, bounced).status == SubscriberStatus.UNSUBSCRIBED
    assert [(e.old_status, e.new_status) for e in events(store, bounced)] == [
        ("active", "bounced"),
        ("bounced", "unsubscribed"),
    ]


def test_resubscribe_only_undoes_what_the_same_issue_link_did(
    client: TestClient, store: Store, web_config: Config
) -> None:
    add_issue(store, 25)
    add_issue(store, 26)
    jane = add_subscriber(store, "jane@example.org")
    may, june = token_for(web_config, jane, 25), token_for(web_config, jane, 26)
    client.post(f"/unsubscribe/{may}", data=ONE_CLICK)
    # June's link did not unsubscribe her: it may not undo May's.
    assert ">Resubscribe</button>" not in client.get(f"/unsubscribe/{june}").text
    assert ">Resubscribe</button>" not in client.post(f"/unsubscribe/{june}", data=ONE_CLICK).text
    assert client.post(f"/resubscribe/{june}").status_code == 409
    assert reload(store, jane).status == SubscriberStatus.UNSUBSCRIBED
    # May's link may, and shows so.
    assert ">Resubscribe</button>" in client.get(f"/unsubscribe/{may}").text
    assert client.post(f"/resubscribe/{may}").status_code == 200
    assert reload(store, jane).status == SubscriberStatus.ACTIVE


def test_resubscribe_reads_the_latest_change_of_the_history(
    client: TestClient, store: Store, web_config: Config
) -> None:
    """Bounced, reactivated by the operator, then unsubscribed by a link: that link may undo
    it (active before it); an operator's unsubscribe after a link's may not be undone."""
    add_issue(store, 25)
    jane = add_subscriber(store, "jane@example.org", SubscriberStatus.BOUNCED)
    set_status(store, "jane@example.org", SubscriberStatus.ACTIVE, source="cli")
    token = token_for(web_config, jane, 25)
    client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    assert client.post(f"/resubscribe/{token}").status_code == 200
    assert reload(store, jane).status == SubscriberStatus.ACTIVE
    client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    set_status(store, "jane@example.org", SubscriberStatus.BOUNCED, source="bounce")
    set_status(store, "jane@example.org", SubscriberStatus.UNSUBSCRIBED, source="cli")
    assert client.post(f"/resubscribe/{token}").status_code == 409
    assert reload(store, jane).status_source == "cli"


def test_a_test_send_link_undoes_only_its_own_unsubscribe(
    client: TestClient, store: Store, web_config: Config
) -> None:
    """Issue 0 (a test copy) and an issue never recorded both have no issues row: the
    history's reason still tells them apart."""
    jane = add_subscriber(store, "jane@example.org")
    test_copy, unknown = token_for(web_config, jane, 0), token_for(web_config, jane, 99)
    client.post(f"/unsubscribe/{test_copy}", data=ONE_CLICK)
    assert client.post(f"/resubscribe/{unknown}").status_code == 409
    assert client.post(f"/resubscribe/{test_copy}").status_code == 200
    assert reload(store, jane).status == SubscriberStatus.ACTIVE


def test_bounced_can_opt_out_and_complained_stays(
    client: TestClient, store: Store, web_config: Config
) -> None:
    bounced = add_subscriber(store, "b@example.org", SubscriberStatus.BOUNCED)
    complained = add_subscriber(store, "c@example.org", SubscriberStatus.COMPLAINED)
    page = client.get(f"/unsubscribe/{token_for(web_config, bounced)}")
    assert ">Unsubscribe</button>" in page.text
    client.post(f"/unsubscribe/{token_for(web_config, bounced)}", data=ONE_CLICK)
    assert reload(store, bounced).status == SubscriberStatus.UNSUBSCRIBED
    answer = client.post(f"/unsubscribe/{token_for(web_config, complained)}", data=ONE_CLICK)
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    assert ">Resubscribe</button>" not in answer.text
    assert reload(store, complained).status == SubscriberStatus.COMPLAINED


def test_bad_tokens_get_one_identical_404_and_change_nothing(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    good = token_for(web_config, jane)
    other_key = [secrets.token_urlsafe(32).encode()]
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    bad = [
        good[:-1],  # truncated
        good[:20],
        good + "A",
        flipped,  # one character changed
        make_token(other_key, jane.uid, 25),  # forged with another key
        make_token(web_config.secret_keys(), "ab" * 16, 25),  # well signed, unknown uid
        moved_to_another_issue(web_config, jane.uid, good),
        "x" * 50,
        "%00" * 20,
        "é" * 50,
        "A" * 5000,
    ]
    reference = client.get("/no-such-page")
    assert reference.status_code == 404
    for token in bad:
        for method in ("GET", "POST"):
            answer = client.request(method, f"/unsubscribe/{token}", data=ONE_CLICK)
            assert answer.status_code == 404, (method, token)
            assert answer.text == reference.text
        answer = client.post(f"/resubscribe/{token}")
        assert (answer.status_code, answer.text) == (404, reference.text)
    assert reload(store, jane).status == SubscriberStatus.ACTIVE
    assert count_events(store) == 0


def other_spellings(token: str) -> list[str]:
    """The same bytes spelled otherwise: the last character with other spare low bits, and
    the standard alphabet's + and / for - and _ (what a lenient decoder takes alike)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    high = alphabet.index(token[-1]) & 0b110000  # the 2 bits the last character carries
    spellings = [token[:-1] + alphabet[high | low] for low in range(16)]
    spellings.remove(token)
    spellings.append(token.replace("-", "+").replace("_", "/"))
    return spellings


def test_other_spellings_of_a_valid_token_are_the_404_and_change_nothing(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    # A token with a - in it (its + spelling is a path the router still reaches).
    token = next(t for t in (token_for(web_config, jane, n) for n in range(1, 500)) if "-" in t)
    reference = client.get("/no-such-page")
    spellings = other_spellings(token)
    assert len(spellings) == 16
    for spelling in spellings:
        for method in ("GET", "POST"):
            answer = client.request(method, f"/unsubscribe/{spelling}", data=ONE_CLICK)
            assert (answer.status_code, answer.text) == (404, reference.text), spelling
    assert reload(store, jane).status == SubscriberStatus.ACTIVE
    assert count_events(store) == 0
    assert client.get(f"/unsubscribe/{token}").status_code == 200


def test_token_of_a_forgotten_subscriber_is_404(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    token = token_for(web_config, jane)
    assert forget(store, "jane@example.org").was_subscribed  # GDPR erasure
    reference = client.get("/no-such-page").text
    for method, path in [("GET", "unsubscribe"), ("POST", "unsubscribe"), ("POST", "resubscribe")]:
        answer = client.request(method, f"/{path}/{token}", data=ONE_CLICK)
        assert (answer.status_code, answer.text) == (404, reference)


def test_unsubscribe_is_committed_before_the_answer(
    client: TestClient, store: Store, web_config: Config
) -> None:
    """A running send checks the status in its own connection before each message."""
    from mailer.store.db import open_store

    jane = add_subscriber(store, "jane@example.org")
    sender = open_store(web_config.database_url, check_schema=False)
    try:
        client.post(f"/unsubscribe/{token_for(web_config, jane)}", data=ONE_CLICK)
        with sender.session() as session:
            row = session.get(Subscriber, jane.id)
            assert row is not None and row.status == SubscriberStatus.UNSUBSCRIBED
    finally:
        sender.close()


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jane@example.org", "j***@example.org"),
        ("Jane.Doe+news@Example.ORG", "J***@Example.ORG"),
        ("abc@example.org", "a***@example.org"),
        ("ab@example.org", "***@example.org"),  # first of two would give half away
        ("a@example.org", "***@example.org"),
        ("zoë@bücher.example", "z***@bücher.example"),
        ('"odd@local"@example.org', '"***@example.org'),
        ("not-an-address", "***"),
    ],
)
def test_masking(address: str, masked: str) -> None:
    assert mask_address(address) == masked


def test_page_escapes_the_masked_address(
    client: TestClient, store: Store, web_config: Config
) -> None:
    odd = raw_subscriber(store, "<b>x@example.org")
    page = client.get(f"/unsubscribe/{token_for(web_config, odd)}").text
    assert "&lt;***@example.org" in page
    assert "<b>" not in page


@contextlib.contextmanager
def import_lock(store: Store, subscriber: Subscriber) -> Iterator[None]:
    """Hold the lock a long `mailer subscribers import` holds on ``subscriber``: SQLite's
    database-wide write lock, or PostgreSQL's lock on the row it updated."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
        finally:
            conn.close()  # rolls back
        return
    with store.engine.connect() as locker:
        locker.execute(
            select(Subscriber.id).where(Subscriber.id == subscriber.id).with_for_update()
        )
        yield
        locker.rollback()


def test_a_post_waits_for_an_import_holding_the_lock(
    client: TestClient, store: Store, web_config: Config
) -> None:
    jane = add_subscriber(store, "jane@example.org")
    with import_lock(store, jane):
        answers: list[int] = []
        post = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    f"/unsubscribe/{token_for(web_config, jane)}", data=ONE_CLICK
                ).status_code
            )
        )
        post.start()
        post.join(0.5)
        assert post.is_alive() and reload(store, jane).status == SubscriberStatus.ACTIVE
    post.join(10)
    assert answers == [200]
    assert reload(store, jane).status == SubscriberStatus.UNSUBSCRIBED


def test_a_post_that_cannot_get_the_lock_is_a_503_to_retry_and_changes_nothing(
    store: Store, web_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "LOCK_WAIT_MS", 200)
    jane = add_subscriber(store, "jane@example.org")
    url = f"/unsubscribe/{token_for(web_config, jane)}"
    with TestClient(create_app(web_config), raise_server_exceptions=False) as client:
        with import_lock(store, jane):
            answer = client.post(url, data=ONE_CLICK)
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
            assert reload(store, jane).status == SubscriberStatus.ACTIVE
        # The mail provider's retry, once the import has committed, goes through.
        assert client.post(url, data=ONE_CLICK).status_code == 200
    assert reload(store, jane).status == SubscriberStatus.UNSUBSCRIBED
