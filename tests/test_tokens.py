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
