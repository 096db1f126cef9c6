"""`mailer send --at`'s times: offsets, the newsletter's zone, clock changes, the past."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.cli.when import parse_at, show_time
from mailer.config import load_config
from mailer.errors import ConfigError, SendError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(text: str, zone: str = "UTC") -> datetime:
    return parse_at(text, zone, now=NOW)


def test_an_offset_wins_over_the_newsletter_zone() -> None:
    expected = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
    assert at("2026-12-05T09:00+05:00", "Europe/Berlin") == expected
    assert at("2026-12-05T04:00Z", "Asia/Tashkent") == expected
    assert at("2026-12-05 09:00:00+0500") == expected


@pytest.mark.parametrize(
    ("text", "zone", "utc"),
    [
        ("2026-12-05T09:00", "UTC", datetime(2026, 12, 5, 9, 0, tzinfo=UTC)),
        # Tashkent: +05:00 the whole year (no DST since 1992)
        ("2026-12-05T09:00", "Asia/Tashkent", datetime(2026, 12, 5, 4, 0, tzinfo=UTC)),
        ("2027-07-05T09:00", "Asia/Tashkent", datetime(2027, 7, 5, 4, 0, tzinfo=UTC)),
        # Berlin: +01:00 in winter, +02:00 in summer
        ("2026-12-05T09:00", "Europe/Berlin", datetime(2026, 12, 5, 8, 0, tzinfo=UTC)),
        ("2027-07-05T09:00", "Europe/Berlin", datetime(2027, 7, 5, 7, 0, tzinfo=UTC)),
        ("2027-03-28 01:59", "Europe/Berlin", datetime(2027, 3, 28, 0, 59, tzinfo=UTC)),
        ("2027-03-28 03:00", "Europe/Berlin", datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),
    ],
)
def test_a_time_without_offset_is_read_in_the_newsletter_zone(
    text: str, zone: str, utc: datetime
) -> None:
    assert at(text, zone) == utc


def test_a_local_time_the_clocks_skip_is_refused() -> None:
    with pytest.raises(SendError, match=r"^--at: '2027-03-28T02:30' does not exist in Europe/"):
        at("2027-03-28T02:30", "Europe/Berlin")
    # with its offset it is a real instant
    assert at("2027-03-28T02:30+01:00", "Europe/Berlin") == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)


def test_a_local_time_that_happens_twice_is_refused_naming_both_offsets() -> None:
    with pytest.raises(SendError) as refused:
        at("2027-10-31T02:30", "Europe/Berlin")
    message = str(refused.value)
    assert message.startswith("--at: '2027-10-31T02:30' happens twice in Europe/Berlin")
    assert "+02:00" in message and "+01:00" in message
    assert at("2027-10-31T02:30+01:00", "Europe/Berlin") == datetime(
        2027, 10, 31, 1, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["2026-12-01T11:59", "2026-12-01T12:00", "2020-01-01T00:00Z"])
def test_a_time_not_in_the_future_is_refused(text: str) -> None:
    with pytest.raises(SendError, match=r"^--at: .* has passed \(now 2026-12-01 12:00 UTC\)$"):
        at(text)
    assert at("2026-12-01T12:00:01") == datetime(2026, 12, 1, 12, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "09:00", "2026-13-05T09:00", "5.12.2026 9:00", ""])
def test_a_malformed_time_is_one_line_naming_at(text: str) -> None:
    with pytest.raises(SendError, match=r"^--at: .* is not a date and time like 2026-12-05T09:00"):
        at(text)


def test_a_bare_date_is_refused() -> None:
    with pytest.raises(SendError, match=r"^--at: '2026-12-05' has no time of day"):
        at("2026-12-05")


def test_times_are_shown_in_the_zone_and_utc() -> None:
    instant = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
    assert show_time(instant, "Asia/Tashkent") == (
        "2026-12-05 09:00 Asia/Tashkent (2026-12-05 04:00 UTC)"
    )
    assert show_time(instant, "America/New_York") == (
        "2026-12-04 23:00 America/New_York (2026-12-05 04:00 UTC)"
    )
    assert show_time(instant, "UTC") == "2026-12-05 04:00 UTC"
    assert show_time(instant.replace(second=7), "UTC") == "2026-12-05 04:00:07 UTC"


def test_the_timezone_setting_is_checked_naming_the_key(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_config().timezone == "UTC"
    monkeypatch.setenv("MAILER_TIMEZONE", "Asia/Tashkent")
    assert load_config().timezone == "Asia/Tashkent"
    for bad in ("Mars/Olympus", "/etc/passwd", "../../etc/localtime", "+05:00"):
        monkeypatch.setenv("MAILER_TIMEZONE", bad)
        with pytest.raises(ConfigError, match=r"^timezone: expected an IANA time zone name"):
            load_config()
