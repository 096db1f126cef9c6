"""Address rules: email-validator syntax, normalised form, case-insensitive key, no CR/LF/NUL."""

from __future__ import annotations

import random
import string

import pytest

from mailer.errors import InvalidAddress
from mailer.store.addresses import _slow, address_hash, normalise_address, normalise_name


def test_normalised_form_keeps_local_part_and_lowercases_domain() -> None:
    address = normalise_address("  Jane.Doe@Example.ORG ")
    assert address.email == "Jane.Doe@example.org"
    assert address.key == "jane.doe@example.org"


def test_internationalised_domain_is_decoded() -> None:
    assert normalise_address("a@xn--bcher-kva.com").email == "a@bücher.com"
    assert normalise_address("Ünï@Bücher.COM").key == "ünï@bücher.com"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain",
        "a@b",
        "a..b@example.org",
        "a@localhost",
        "a@example.test",
        "a@[1.2.3.4]",
        "@example.org",
        "a@-example.org",
    ],
)
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress, match="email"):
        normalise_address(bad)


@pytest.mark.parametrize(
    "bad", ["a@example.org\r\nBcc: x@evil.org", "a\n@example.org", "a@ex\0.org"]
)
def test_line_breaks_and_nul_are_refused_in_addresses(bad: str) -> None:
    with pytest.raises(InvalidAddress, match="email: contains a line break or NUL"):
        normalise_address(bad)


@pytest.mark.parametrize("bad", ["Jane\r\nBcc: x@evil.org", "Jane\n", "Ja\0ne"])
def test_line_breaks_and_nul_are_refused_in_names(bad: str) -> None:
    with pytest.raises(InvalidAddress, match="name: contains a line break or NUL"):
        normalise_name(bad + " Doe")


def test_names_are_trimmed_and_bounded() -> None:
    assert normalise_name("  Jane Doe ") == "Jane Doe"
    assert normalise_name(None) == ""
    with pytest.raises(InvalidAddress, match="name: longer than 200"):
        normalise_name("x" * 201)


def test_fast_path_agrees_with_email_validator() -> None:
    # The cached fast path must accept exactly what email-validator accepts, normalised alike.
    rng = random.Random(7)
    chars = string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-@\"() ,;:<>[]\\é"
    domains = [
        "example.com",
        "EXAMPLE.org",
        "a.b",
        "x..y",
        "-a.com",
        "localhost",
        "foo.test",
        "xn--bcher-kva.ch",
        "Bücher.de",
        "1.2",
        "a" * 64 + ".com",
        "sub.example",
    ]
    for _ in range(20000):
        local = "".join(rng.choice(chars) for _ in range(rng.randint(0, 8)))
        if rng.random() < 0.2:
            local = "a" * rng.randint(60, 70)
        raw = f"{local}@{rng.choice(domains)}"
        try:
            fast = normalise_address(raw)
        except InvalidAddress:
            fast = None
        try:
            slow = _slow(raw.strip())
        except InvalidAddress:
            slow = None
        assert fast == slow, raw


def test_address_hash_is_sha256_of_key() -> None:
    assert address_hash("a@example.org") == (
        "e16bfe08be114c7b3737aa01ce504ebcb5d13fc44897c38c6cac63ddc7151463"
    )
