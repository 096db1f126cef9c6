from __future__ import annotations

import base64

import pytest

from mailer.errors import TokenError
from mailer.tokens import TOKEN_LENGTH, make_token, new_uid, read_token

KEY = b"k" * 32
OLD = b"o" * 32


def test_round_trip_and_opacity() -> None:
    uid = new_uid()
    token = make_token([KEY], uid, 25)
    assert len(token) == TOKEN_LENGTH
    assert uid not in token
    claims = read_token([KEY], token)
    assert (claims.subscriber_uid, claims.issue_number) == (uid, 25)


def test_uids_are_random_128_bit() -> None:
    uids = {new_uid() for _ in range(1000)}
    assert len(uids) == 1000
    assert all(len(bytes.fromhex(u)) == 16 for u in uids)


def test_rotation_keeps_old_links_working() -> None:
    uid = new_uid()
    old_token = make_token([OLD], uid, 3)
    assert read_token([KEY, OLD], old_token).subscriber_uid == uid
    with pytest.raises(TokenError):
        read_token([KEY], old_token)


@pytest.mark.parametrize("mutate", ["truncate", "flip_mac", "flip_issue", "garbage", "unicode"])
def test_forged_tokens_are_rejected(mutate: str) -> None:
    token = make_token([KEY], new_uid(), 25)
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    if mutate == "truncate":
        bad = token[:-1]
    elif mutate == "flip_mac":
        raw[-1] ^= 1
        bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    elif mutate == "flip_issue":
        raw[20] ^= 1
        bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    elif mutate == "garbage":
        bad = "!" * TOKEN_LENGTH
    else:
        bad = "é" * TOKEN_LENGTH
    with pytest.raises(TokenError, match="invalid unsubscribe token"):
        read_token([KEY], bad)


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_every_one_character_variant_is_refused() -> None:
    """Only the canonical encoding is a token: no other character at any position passes,
    neither the spare low bits of the last character nor the standard alphabet's + and /."""
    token = make_token([KEY], new_uid(), 25)
    others = URLSAFE + "+/=.~ %"  # other base64 alphabets, padding, URL-safe punctuation
    variants = [
        token[:i] + c + token[i + 1 :] for i in range(len(token)) for c in others if c != token[i]
    ]
    assert len(variants) == len(token) * (len(others) - 1)
    accepted = []
    for variant in variants:
        try:
            read_token([KEY], variant)
        except TokenError:
            continue
        accepted.append(variant)
    assert accepted == []
    assert read_token([KEY], token).issue_number == 25  # the original still reads


def test_the_standard_alphabet_is_not_a_token() -> None:
    """A token whose - or _ became + or / (standard base64) is refused, not decoded."""
    uid = new_uid()
    tokens = (make_token([KEY], uid, n) for n in range(200))
    token = next(t for t in tokens if "-" in t or "_" in t)
    standard = token.replace("-", "+").replace("_", "/")
    assert standard != token
    with pytest.raises(TokenError, match="invalid unsubscribe token"):
        read_token([KEY], standard)
