"""The sign-up form and its confirmation link over HTTP (Starlette's TestClient, a real
database): one answer for every address, bots and embedded forms, the link's GET and POST,
forged/expired/used tokens, the client address, framing."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from mailer.config import Config
from mailer.store.consent import consent_hash, consent_records
from mailer.store.db import Store
from mailer.store.models import Signup, SignupMail, Subscriber, SubscriberStatus
from mailer.tokens import FormStamp, make_form_stamp, make_signup_token, read_form_stamp
from mailer.web import create_app

from .helpers import add_subscriber, token_for
from .test_web_http import assert_secure

PERSON = ("203.0.113.5", 50000)


@contextmanager
def app_client(config: Config, peer: tuple[str, int] = PERSON) -> Iterator[TestClient]:
    with TestClient(create_app(config), raise_server_exceptions=False, client=peer) as client:
        yield client


@pytest.fixture
def web(web_config: Config, store: Store) -> Iterator[TestClient]:
    with app_client(web_config) as client:
        yield client


def stamp(config: Config, age: int = 5, kind: str = "form", source: str = "/subscribe") -> str:
    issued = int(time.time()) - age
    value = FormStamp(issued, kind, consent_hash(config.consent_text), source)
    return make_form_stamp(config.secret_keys(), value)


def sign_up(client: TestClient, config: Config, email: str, **fields: str) -> httpx2.Response:
    form = {"email": email, "name": "", "website": "", "stamp": stamp(config), **fields}
    return client.post("/subscribe", data=form)


def outbox(store: Store) -> list[SignupMail]:
    with store.session() as session:
        return list(session.scalars(select(SignupMail).order_by(SignupMail.id)))


def signups(store: Store) -> list[Signup]:
    with store.session() as session:
        return list(session.scalars(select(Signup).order_by(Signup.id)))


def link_token(store: Store, config: Config, email: str) -> str:
    with store.session() as session:
        nonce = session.scalars(
            select(SignupMail.nonce)
            .join(Signup, Signup.id == SignupMail.signup_id)
            .where(Signup.email_key == email.lower())
        ).one()
    return make_signup_token(config.secret_keys(), bytes.fromhex(nonce))


def main_text(page: httpx2.Response) -> str:
    [main] = re.findall(r"<main.*?</main>", page.text, re.S)
    return main


def test_the_form_page(web: TestClient, web_config: Config) -> None:
    page = web.get("/subscribe")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert_secure(page)
    assert page.headers["X-Frame-Options"] == "DENY"
    html = page.text
    assert '<form method="post" action="subscribe"' in html
    assert re.search(r'<input id="email" type="email" name="email" value="" required', html)
    assert re.search(r'<input id="name" type="text" name="name" value=""', html)
    # The honeypot: off-screen for people (the stylesheet), out of the tab order.
    assert re.search(r'<div class="hp" aria-hidden="true">.*name="website".*tabindex="-1"', html)
    assert ".hp{position:absolute;left:-10000px" in html
    assert web_config.consent_text in html and "Democracy in Uzbekistan" in html
    assert f'href="{web_config.base_url}/"' in html  # the archive
    assert "<script" not in html
    [value] = re.findall(r'name="stamp" value="([^"]+)"', html)
    served = read_form_stamp(web_config.secret_keys(), value)
    assert (served.kind, served.source) == ("form", "/subscribe")
    assert served.consent_hash == consent_hash(web_config.consent_text)
    assert abs(served.issued_at - time.time()) < 5
    assert web.head("/subscribe").status_code == 200


ANSWER = re.compile(r"If <span class=\"address\">[^<]*</span>")


def test_every_address_gets_the_same_answer(
    web: TestClient, web_config: Config, store: Store
) -> None:
    """New, pending, active, unsubscribed, bounced, complained: one page, the address aside."""
    sign_up(web, web_config, "pending@example.org")
    add_subscriber(store, "active@example.org")
    add_subscriber(store, "left@example.org", SubscriberStatus.UNSUBSCRIBED)
    add_subscriber(store, "bounced@example.org", SubscriberStatus.BOUNCED)
    add_subscriber(store, "complained@example.org", SubscriberStatus.COMPLAINED)
    pages = {}
    for who in ("new", "pending", "active", "left", "bounced", "complained"):
        page = sign_up(web, web_config, f"{who}@example.org")
        assert page.status_code == 200, who
        assert f'If <span class="address">{who}@example.org</span>' in page.text
        pages[who] = ANSWER.sub("", main_text(page))
    assert len(set(pages.values())) == 1, pages
    assert "Check your inbox" in pages["new"]
    # Each got a confirmation email queued but the pending one (one per address a day).
    assert len(outbox(store)) == 6
    # Nobody became active or changed by signing up.
    with store.session() as session:
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert statuses == {
        "active@example.org": "active",
        "left@example.org": "unsubscribed",
        "bounced@example.org": "bounced",
        "complained@example.org": "complained",
    }


@pytest.mark.parametrize(
    "bot",
    [
        {"website": "http://bots.example.net"},  # filled the honeypot
        {"stamp": "AAAA"},  # a forged stamp
        {"stamp": "fresh"},  # submitted at once after the page was served
    ],
)
def test_a_bot_gets_the_same_answer_and_no_email(
    web: TestClient, web_config: Config, store: Store, bot: dict[str, str]
) -> None:
    if bot.get("stamp") == "fresh":
        bot = {"stamp": stamp(web_config, age=0)}
    person = sign_up(web, web_config, "person@example.org")
    robot = sign_up(web, web_config, "victim@example.org", **bot)
    assert robot.status_code == person.status_code == 200
    assert ANSWER.sub("", main_text(robot)) == ANSWER.sub("", main_text(person))
    assert [s.email for s in signups(store)] == ["person@example.org"]
    assert len(outbox(store)) == 1


def test_an_embedded_form_without_stamp_is_asked_to_press_subscribe_again(
    web: TestClient, web_config: Config, store: Store
) -> None:
    headers = {"Origin": "https://blog.example.org"}
    form = {"email": "reader@example.org", "name": "Rea Der"}
    again = web.post("/subscribe", data=form, headers=headers)
    assert again.status_code == 200 and "One more step" in again.text
    assert signups(store) == [] and outbox(store) == []
    assert 'value="reader@example.org"' in again.text and 'value="Rea Der"' in again.text
    assert 'name="website" value=""' in again.text  # a fresh honeypot
    [value] = re.findall(r'name="stamp" value="([^"]+)"', again.text)
    fresh = read_form_stamp(web_config.secret_keys(), value)
    assert (fresh.kind, fresh.source) == ("again", "https://blog.example.org")
    # Pressed at once: asked once more (never dropped); a second later: recorded.
    assert "One more step" in web.post("/subscribe", data={**form, "stamp": value}).text
    assert signups(store) == []
    older = stamp(web_config, age=2, kind="again", source=fresh.source)
    done = web.post("/subscribe", data={**form, "stamp": older, "website": ""})
    assert "Check your inbox" in done.text
    [signup] = signups(store)
    assert (signup.form, signup.name, signup.ip) == (
        "https://blog.example.org",
        "Rea Der",
        PERSON[0],
    )
    assert len(outbox(store)) == 1


def test_where_an_embedded_form_was(web: TestClient, web_config: Config) -> None:
    def source(headers: dict[str, str]) -> str:
        page = web.post("/subscribe", data={"email": "a@example.org"}, headers=headers)
        [value] = re.findall(r'name="stamp" value="([^"]+)"', page.text)
        return read_form_stamp(web_config.secret_keys(), value).source

    assert source({"Referer": "https://news.example.com/join?x=1"}) == "https://news.example.com"
    assert source({"Origin": web_config.base_url}) == "/subscribe"  # our own page
    assert source({"Origin": "null"}) == "an embedded form (origin unknown)"
    assert source({"Origin": "javascript:alert(1)"}) == "an embedded form (origin unknown)"


@pytest.mark.parametrize("address", ["nope", "", "a@b@example.org", "a@-example.org", "a b@x.org"])
def test_an_invalid_address_is_shown_back_for_bots_too(
    web: TestClient, web_config: Config, store: Store, address: str
) -> None:
    for extra in ({}, {"website": "spam"}):
        page = sign_up(web, web_config, address, **extra)
        assert page.status_code == 400 and "Please check the address" in page.text
    assert signups(store) == []


def test_the_link_shows_then_confirms(web: TestClient, web_config: Config, store: Store) -> None:
    sign_up(web, web_config, "Jane.Doe@example.org", name="Jane")
    token = link_token(store, web_config, "jane.doe@example.org")
    url = f"/confirm/{token}"
    for _ in range(3):  # link scanners: any number of GETs and HEADs change nothing
        page = web.get(url)
        assert page.status_code == 200 and web.head(url).status_code == 200
    assert_secure(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert "J***@example.org" in page.text and "Jane.Doe" not in page.text
    assert 'value="Jane"' in page.text and web_config.consent_text in page.text
    assert re.search(r"<button type=\"submit\">Confirm</button>", page.text)
    assert "<script" not in page.text
    with store.session() as session:
        assert session.scalars(select(Subscriber)).all() == []
    welcome = web.post(url, data={"name": "Jane Doe"})
    assert welcome.status_code == 200 and "Welcome to Democracy in Uzbekistan" in welcome.text
    assert f'href="{web_config.base_url}/"' in welcome.text  # the archive
    with store.session() as session:
        jane = session.scalars(select(Subscriber)).one()
    assert (jane.email, jane.name, jane.status, jane.status_source) == (
        "Jane.Doe@example.org",
        "Jane Doe",
        "active",
        "signup",
    )
    [record] = consent_records(store, jane.id)
    assert (record.form, record.ip, record.text) == (
        "/subscribe",
        PERSON[0],
        web_config.consent_text,
    )
    # A repeated POST (a double click) within the grace: the welcome page, nothing more.
    assert "Welcome" in web.post(url, data={"name": "Someone Else"}).text
    assert "Welcome" in web.get(url).text
    assert len(consent_records(store, jane.id)) == 1
    with store.session() as session, session.begin():
        session.execute(update(Signup).values(confirmed_at=datetime.now(UTC) - timedelta(hours=1)))
    assert web.post(url).status_code == 404 and web.get(url).status_code == 404


def test_forged_expired_and_used_tokens_get_the_one_404(
    web: TestClient, web_config: Config, store: Store
) -> None:
    unknown = web.get("/confirm/garbage")
    assert unknown.status_code == 404
    sign_up(web, web_config, "late@example.org")
    sign_up(web, web_config, "used@example.org")
    late = link_token(store, web_config, "late@example.org")
    used = link_token(store, web_config, "used@example.org")
    assert web.post(f"/confirm/{used}").status_code == 200
    jane = add_subscriber(store, "jane@example.org")
    with store.session() as session, session.begin():
        session.execute(
            update(Signup)
            .where(Signup.email_key == "late@example.org")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.execute(
            update(Signup)
            .where(Signup.email_key == "used@example.org")
            .values(confirmed_at=datetime.now(UTC) - timedelta(minutes=11))
        )
    forged = late[:-4] + ("AAAA" if not late.endswith("AAAA") else "BBBB")
    tokens = [
        late,  # expired
        used,  # used, past the grace
        forged,  # forged
        make_signup_token([b"x" * 32], bytes(16)),  # signed with another key
        token_for(web_config, jane),  # an unsubscribe token is no sign-up token
        late + "=",
    ]
    for token in tokens:
        for method in ("GET", "POST"):
            page = web.request(method, f"/confirm/{token}")
            assert page.status_code == 404, (token, method)
            assert page.text == unknown.text
    with store.session() as session:
        assert session.scalars(select(Subscriber.email)).all() == [
            "used@example.org",
            "jane@example.org",
        ]


def test_the_client_address_comes_from_trusted_proxies_only(
    web_config: Config, store: Store
) -> None:
    config = dataclasses.replace(web_config, trusted_proxies="10.0.0.0/8")
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
    with app_client(config, ("10.0.0.2", 4000)) as proxied:
        sign_up(proxied, config, "via-proxy@example.org")
        proxied.post(
            "/subscribe",
            data={"email": "forwarded@example.org", "website": "", "stamp": stamp(config)},
            headers=forwarded,
        )
    with app_client(config, ("192.0.2.1", 4000)) as direct:
        direct.post(
            "/subscribe",
            data={"email": "direct@example.org", "website": "", "stamp": stamp(config)},
            headers=forwarded,  # not from a trusted proxy: not believed
        )
    assert {s.email: s.ip for s in signups(store)} == {
        "via-proxy@example.org": "10.0.0.2",
        "forwarded@example.org": "198.51.100.7",
        "direct@example.org": "192.0.2.1",
    }


def test_a_proxy_without_trusted_proxies_is_told_once(
    web: TestClient, web_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        sign_up(web, web_config, f"p{n}@example.org")
        web.post(
            "/subscribe",
            data={"email": f"q{n}@example.org", "website": "", "stamp": stamp(web_config)},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
    told = [r.getMessage() for r in caplog.records if "trusted_proxies" in r.getMessage()]
    assert told == [
        "sign-ups arrive with X-Forwarded-For but trusted_proxies is not set: the client "
        f"address is the socket peer ({PERSON[0]}) for every sign-up"
    ]


def test_the_form_may_be_framed_only_by_the_listed_sites(web_config: Config, store: Store) -> None:
    config = dataclasses.replace(web_config, signup_frame_ancestors="https://blog.example.org")
    with app_client(config) as client:
        for page in (client.get("/subscribe"), sign_up(client, config, "framed@example.org")):
            policy = page.headers["Content-Security-Policy"]
            assert "frame-ancestors https://blog.example.org;" in policy
            assert "X-Frame-Options" not in page.headers
            assert "default-src 'none'" in policy and "form-action 'self'" in policy
        # Every other page stays unframeable.
        for path in (
            "/",
            "/confirm/garbage",
            f"/confirm/{link_token(store, config, 'framed@example.org')}",
        ):
            assert_secure(client.get(path))


def test_a_huge_form_is_refused(web: TestClient, store: Store) -> None:
    page = web.post("/subscribe", data={"email": "a@example.org", "name": "x" * 70_000})
    assert page.status_code == 413 and signups(store) == []


def test_the_hourly_cap_answers_alike_and_logs_once(
    web_config: Config, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(web_config, signup_emails_per_hour=2)
    with app_client(config) as client:
        pages = [sign_up(client, config, f"r{i}@example.org") for i in range(4)]
    assert {ANSWER.sub("", main_text(p)) for p in pages} == {ANSWER.sub("", main_text(pages[0]))}
    assert len(outbox(store)) == 2 and len(signups(store)) == 4
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "signup_emails_per_hour" in warnings[0].getMessage()
