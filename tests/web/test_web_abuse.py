"""The sign-up form's bot rules (honeypot, signed stamp) and the client address, as pure
decisions."""

from __future__ import annotations

import pytest

from mailer.tokens import FormStamp, make_form_stamp
from mailer.web.abuse import MAX_AGE, MIN_SECONDS, MIN_SECONDS_AGAIN, Verdict, judge
from mailer.web.client_ip import client_ip, parse_networks

KEY = b"k" * 32
CONSENT = "c" * 64
NOW = 1_800_000_000


def stamp(age: int, kind: str = "form", consent: str = CONSENT, key: bytes = KEY) -> str:
    return make_form_stamp([key], FormStamp(NOW - age, kind, consent, "/subscribe"))


def verdict(form: dict[str, str]) -> Verdict:
    return judge(form, [KEY], NOW, CONSENT).verdict


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"email": "a@example.org", "stamp": stamp(10)}, Verdict.PERSON),
        ({"email": "a@example.org", "stamp": stamp(MAX_AGE)}, Verdict.PERSON),
        ({"email": "a@example.org", "stamp": stamp(MIN_SECONDS)}, Verdict.PERSON),
        # The honeypot: anything in it, even with a good stamp.
        ({"email": "a@example.org", "stamp": stamp(10), "website": "http://x"}, Verdict.BOT),
        ({"email": "a@example.org", "stamp": stamp(10), "website": " "}, Verdict.PERSON),
        # Too fast for a person typing into the blank form.
        ({"email": "a@example.org", "stamp": stamp(0)}, Verdict.BOT),
        ({"email": "a@example.org", "stamp": stamp(MIN_SECONDS - 1)}, Verdict.BOT),
        # ... but the filled-in second page may be pressed at once: ask again, send nothing.
        ({"email": "a@example.org", "stamp": stamp(0, "again")}, Verdict.AGAIN),
        ({"email": "a@example.org", "stamp": stamp(MIN_SECONDS_AGAIN, "again")}, Verdict.PERSON),
        # Forged, from another key, from the future.
        ({"email": "a@example.org", "stamp": stamp(10)[:-3] + "AAA"}, Verdict.BOT),
        ({"email": "a@example.org", "stamp": stamp(10, key=b"o" * 32)}, Verdict.BOT),
        ({"email": "a@example.org", "stamp": stamp(-3600)}, Verdict.BOT),
        # No stamp (the form embedded on another site), a stale one, another consent text.
        ({"email": "a@example.org"}, Verdict.AGAIN),
        ({"email": "a@example.org", "stamp": ""}, Verdict.AGAIN),
        ({"email": "a@example.org", "stamp": stamp(MAX_AGE + 1)}, Verdict.AGAIN),
        ({"email": "a@example.org", "stamp": stamp(10, consent="d" * 64)}, Verdict.AGAIN),
    ],
)
def test_judge(form: dict[str, str], expected: Verdict) -> None:
    assert verdict(form) == expected


def test_a_person_keeps_the_stamp_to_record_where_the_form_was() -> None:
    judged = judge({"stamp": stamp(30)}, [KEY], NOW, CONSENT)
    assert judged.stamp is not None and judged.stamp.source == "/subscribe"


TRUSTED = parse_networks("10.0.0.0/8, 2001:db8::/32, 127.0.0.1/32")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No trusted proxy in the way: the socket peer, whatever the header says.
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),
        ("198.51.100.7", [], "198.51.100.7"),
        # From a trusted proxy: the rightmost address that is not a trusted proxy.
        ("10.0.0.2", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.1, 10.1.1.1"], "203.0.113.1"),  # 6.6.6.6: a lie
        ("10.0.0.2", ["6.6.6.6", "203.0.113.1, 10.1.1.1"], "203.0.113.1"),  # two headers
        ("127.0.0.1", ["[2001:db9::1]:4711"], "2001:db9::1"),
        ("127.0.0.1", ["203.0.113.9:8080"], "203.0.113.9"),
        ("10.0.0.2", ["::ffff:203.0.113.5"], "203.0.113.5"),
        # All trusted: the leftmost; garbage: the last good hop; nothing: the peer.
        ("10.0.0.2", ["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        ("10.0.0.2", ["203.0.113.1, garbage"], "10.0.0.2"),
        ("10.0.0.2", [], "10.0.0.2"),
        ("2001:db8::5", ["2001:db9::1"], "2001:db9::1"),
        # Not an IP peer at all (a test client, a unix socket): unknown.
        ("testclient", ["203.0.113.1"], ""),
        (None, [], ""),
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_never_believed() -> None:
    assert client_ip("127.0.0.1", ["203.0.113.1"], parse_networks("")) == "127.0.0.1"
