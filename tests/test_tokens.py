from __future__ import annotations

import base64
import re

import pytest

from mailer.errors import TokenError
from mailer.tokens import (
    TOKEN_LENGTH,
    VERP_TOKEN_LENGTH,
    FormStamp,
    make_form_stamp,
    make_preferences_token,
    make_signup_token,
    make_token,
    make_verp_token,
    new_signup_nonce,
    new_uid,
    read_form_stamp,
    read_preferences_token,
    read_signup_token,
    read_token,
    read_verp_token,
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


# --- VERP tokens ---------------------------------------------------------------------------


def test_verp_round_trip_is_short_lowercase_and_opaque() -> None:
    uid = new_uid()
    token = make_verp_token([KEY], uid, 25)
    assert len(token) == VERP_TOKEN_LENGTH == 40
    assert re.fullmatch(r"[a-z2-7]{40}", token)
    assert uid[:16] not in token and uid not in token
    claims = read_verp_token([KEY], token)
    assert (claims.uid_prefix, claims.issue_number) == (uid[:16], 25)
    assert len("bounces+" + token) <= 64


def test_verp_survives_case_folding_and_key_rotation() -> None:
    uid = new_uid()
    token = make_verp_token([OLD], uid, 7)
    assert read_verp_token([KEY, OLD], token.upper()).uid_prefix == uid[:16]
    with pytest.raises(TokenError, match="invalid VERP token"):
        read_verp_token([KEY], token)


@pytest.mark.parametrize("mutate", ["flip", "truncate", "extend", "padding", "digits", "unicode"])
def test_forged_verp_tokens_are_rejected(mutate: str) -> None:
    token = make_verp_token([KEY], new_uid(), 25)
    raw = bytearray(base64.b32decode(token.upper()))
    if mutate == "flip":
        raw[12] ^= 1  # the issue number
        bad = base64.b32encode(bytes(raw)).decode().lower()
    elif mutate == "truncate":
        bad = token[:-1]
    elif mutate == "extend":
        bad = token + "a"
    elif mutate == "padding":
        bad = token[:-2] + "=="
    elif mutate == "digits":
        bad = token[:-1] + "1"  # not in the base32 alphabet
    else:
        bad = token[:-1] + "é"
    with pytest.raises(TokenError, match="invalid VERP token"):
        read_verp_token([KEY], bad)


def test_verp_and_unsubscribe_tokens_have_separate_macs() -> None:
    # The same key and fields: a mac of one kind must not verify as the other.
    uid = new_uid()
    verp = base64.b32decode(make_verp_token([KEY], uid, 3).upper())
    unsubscribe = base64.urlsafe_b64decode(make_token([KEY], uid, 3) + "==")
    assert verp[-12:] not in unsubscribe


def test_verp_token_without_a_key_or_with_a_bad_uid() -> None:
    with pytest.raises(TokenError, match="no secret key"):
        make_verp_token([], new_uid(), 1)
    with pytest.raises(TokenError, match="not hex"):
        make_verp_token([KEY], "zz" * 16, 1)
    with pytest.raises(TokenError, match="out of range"):
        make_verp_token([KEY], new_uid(), 2**32)


def test_every_one_character_variant_of_a_verp_token_is_refused() -> None:
    """Case aside (MTAs may fold it), only the canonical spelling is a VERP token."""
    token = make_verp_token([KEY], new_uid(), 25)
    others = "abcdefghijklmnopqrstuvwxyz234567" + "0189=+/_-."
    refused = 0
    for i in range(len(token)):
        for c in others:
            if c != token[i]:
                with pytest.raises(TokenError):
                    read_verp_token([KEY], token[:i] + c + token[i + 1 :])
                refused += 1
    assert refused == len(token) * (len(others) - 1)
    assert read_verp_token([KEY], token.upper()) == read_verp_token([KEY], token)


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
