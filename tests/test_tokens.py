from __future__ import annotations

import base64

import pytest

from mailer.errors import TokenError
from mailer.tokens import (
    TOKEN_LENGTH,
    FormStamp,
    make_form_stamp,
    make_preferences_token,
    make_signup_token,
    make_token,
    new_signup_nonce,
    new_uid,
    read_form_stamp,
    read_preferences_token,
    read_signup_token,
    read_token,
    signup_lookup_hash,
)

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


# --- preferences, sign-up links, form stamps ---------------------------------------------


def test_preferences_tokens_are_their_own_kind() -> None:
    uid = new_uid()
    token = make_preferences_token([KEY], uid, 25)
    claims = read_preferences_token([OLD, KEY], token)  # any configured key verifies
    assert (claims.subscriber_uid, claims.issue_number) == (uid, 25)
    # Same layout as an unsubscribe token, another MAC purpose: neither passes for the other.
    unsubscribe = make_token([KEY], uid, 25)
    assert len(token) == len(unsubscribe) and token != unsubscribe
    with pytest.raises(TokenError):
        read_preferences_token([KEY], unsubscribe)
    with pytest.raises(TokenError):
        read_token([KEY], token)
    with pytest.raises(TokenError):
        read_preferences_token([OLD], token)


def test_signup_tokens_carry_a_nonce_only_its_key_can_sign() -> None:
    nonce = new_signup_nonce()
    token = make_signup_token([KEY], nonce)
    assert read_signup_token([KEY, OLD], token) == nonce
    assert nonce.hex() not in token and signup_lookup_hash(nonce) not in token
    assert len({signup_lookup_hash(new_signup_nonce()) for _ in range(100)}) == 100
    assert signup_lookup_hash(nonce) == signup_lookup_hash(nonce)
    for bad in (token[:-1], token + "A", "A" * len(token), make_signup_token([OLD], nonce)):
        with pytest.raises(TokenError, match="invalid sign-up token"):
            read_signup_token([KEY], bad)
    # Neither of the other kinds is a sign-up token, nor the other way round.
    with pytest.raises(TokenError):
        read_signup_token([KEY], make_token([KEY], new_uid(), 1))
    with pytest.raises(TokenError):
        read_token([KEY], token)


def test_a_signup_token_has_one_spelling() -> None:
    token = make_signup_token([KEY], new_signup_nonce())
    variants = {token[:i] + c + token[i + 1 :] for i in range(len(token)) for c in URLSAFE}
    variants.discard(token)
    accepted = []
    for variant in variants:
        try:
            read_signup_token([KEY], variant)
        except TokenError:
            continue
        accepted.append(variant)
    assert accepted == []


def test_form_stamps_round_trip_and_refuse_forgery() -> None:
    stamp = FormStamp(1_700_000_000, "again", "ab" * 32, "https://blog.example.org")
    text = make_form_stamp([KEY], stamp)
    assert read_form_stamp([OLD, KEY], text) == stamp
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[5] ^= 1  # the time
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (forged, text[:-2], "", "x" * 2000, make_form_stamp([OLD], stamp)):
        with pytest.raises(TokenError, match="invalid form stamp"):
            read_form_stamp([KEY], bad)
    with pytest.raises(TokenError):
        make_form_stamp([KEY], FormStamp(1, "other", "ab" * 32, "/subscribe"))
    with pytest.raises(TokenError):
        make_form_stamp([KEY], FormStamp(1, "form", "ab" * 32, "x" * 201))
