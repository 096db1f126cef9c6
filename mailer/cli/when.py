"""Times on the command line: `mailer send --at`, and times as `mailer status` shows them.

A time with an offset (``2026-12-05T09:00+05:00``, ``...Z``) means that instant; one without
is read in the newsletter's ``timezone`` setting, so an editor in Berlin types Berlin time
whatever zone the server runs in. A local time that does not exist (the hour skipped when
clocks go forward) or exists twice (the hour repeated when they go back) is refused: the
editor gives the offset. Output shows both the newsletter's zone and UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mailer.errors import SendError

_EXAMPLE = "2026-12-05T09:00 or 2026-12-05T09:00+05:00"


def parse_at(text: str, zone_name: str, *, now: datetime | None = None) -> datetime:
    """``--at TEXT`` as an aware UTC time, in the future; SendError naming ``--at`` if not."""
    given = text.strip()
    try:
        # fromisoformat: ISO 8601 date and time, "T" or a space between, offset or "Z"
        parsed = datetime.fromisoformat(given)
    except ValueError:
        raise SendError(f"--at: {given!r} is not a date and time like {_EXAMPLE}") from None
    if len(given) <= len("2026-12-05"):  # a bare date: midnight is rarely what was meant
        raise SendError(f"--at: {given!r} has no time of day; give one, like {_EXAMPLE}")
    at = parsed if parsed.tzinfo is not None else _in_zone(parsed, given, zone_name)
    at = at.astimezone(UTC)
    now = now or datetime.now(UTC)
    if at <= now:
        raise SendError(
            f"--at: {show_time(at, zone_name)} has passed (now {show_time(now, zone_name)})"
        )
    return at


def _in_zone(naive: datetime, given: str, zone_name: str) -> datetime:
    zone = ZoneInfo(zone_name)
    local = naive.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise SendError(
            f"--at: {given!r} does not exist in {zone_name} (the clocks skip it); give "
            f"another time, or this one with the offset you mean, like {given}{_offset(local)}"
        )
    if local.replace(fold=1).utcoffset() != local.utcoffset():
        first, second = (_offset(local.replace(fold=f)) for f in (0, 1))
        raise SendError(
            f"--at: {given!r} happens twice in {zone_name} (at {first} and again at "
            f"{second}, when the clocks go back); add the one you mean, like {given}{first}"
        )
    return local


def _offset(at: datetime) -> str:
    return at.isoformat()[-6:]  # "+02:00"


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S" if at.second else "%Y-%m-%d %H:%M")


def show_time(at: datetime, zone_name: str) -> str:
    """``2026-12-05 09:00 Asia/Tashkent (2026-12-05 04:00 UTC)``; just UTC when the
    newsletter's zone is UTC."""
    utc = f"{_clock(at.astimezone(UTC))} UTC"
    if zone_name == "UTC":
        return utc
    return f"{_clock(at.astimezone(ZoneInfo(zone_name)))} {zone_name} ({utc})"
