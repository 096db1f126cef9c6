"""Every setting of ``mailer.toml``, declared once: name, default, help, kind and table.

datasette's habit: one :class:`Setting` table that everything else comes from: the loader
(:mod:`mailer.config` coerces and checks each value with its :class:`Kind`), the commented
starter file ``mailer init`` writes (:func:`starter_text`) and README's settings table
(:func:`readme_table`; ``python -m mailer.settings README.md`` rewrites it, a test checks it).

A kind turns a raw value (a TOML value, or the string of a ``MAILER_<KEY>`` variable) into a
typed one, or raises a ConfigError naming the key and what it expected. Paths are resolved
against ``root``, the config file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import reprlib
import sys
import textwrap
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from mailer.errors import ConfigError

ENV_PREFIX = "MAILER_"
MAX_CONNECTIONS = 64  # parallel SMTP connections: the config's and the CLI's one bound
MAX_TIMEOUT_SECONDS = 3600.0
MAX_MESSAGES_PER_CONNECTION = 100_000
VERP_LOCAL_MAX = 23  # + "+" + a 40-character token = 64, a local part's limit
_SHOWN_CHARS = 40  # values quoted in an error are cut to this many characters
# A bounded repr: a huge list or mapping is summarised while it is written, not after.
_REPR = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring = 2, 4, 4, _SHOWN_CHARS


def show(value: object) -> str:
    """A value as an error message quotes it: short, one line, TOML spelling for booleans.

    Config and compose errors (mailer.compose quotes snippet and manifest values) use it.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…")
    text = _REPR.repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


# --- rates ---------------------------------------------------------------------------------

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|m|min|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float | None:
    """``"100/s"`` -> 100.0 messages per second; ``""`` -> None (unlimited).

    Accepts ``N/s``, ``N/m``, ``N/h`` (or ``sec``, ``min``, ``hour``), N a positive decimal,
    spaces around the ``/`` allowed; anything else is a ConfigError.
    """
    if not text:
        return None
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"rate: {show(text)} should look like 50/s, 3000/m or 10000/h")
    return float(match.group(1)) / _UNIT_SECONDS[match.group(2)]


def rate_window(text: str) -> tuple[int, int]:
    """``"20/h"`` -> (20, 3600): at most so many in a window of so many seconds (a counter's
    view of a rate; a fraction is rounded down, at least 1)."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"rate: {show(text)} should look like 50/s, 3000/m or 10000/h")
    return max(1, int(float(match.group(1)))), _UNIT_SECONDS[match.group(2)]


# --- kinds ---------------------------------------------------------------------------------


class Kind:
    """One line of text (no CR, LF or NUL: values end up in headers), stripped."""

    expected = "text"  # completes "expected ..." in errors, and README's value column
    python_type = "str"  # the Config field's annotation (a test checks they agree)

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        return self.text(setting, value)

    def fail(self, setting: Setting, value: object) -> ConfigError:
        if setting.secret:  # e.g. a URL with a password: never quoted
            return ConfigError(f"{setting.name}: expected {self.expected} (value not shown)")
        return ConfigError(f"{setting.name}: expected {self.expected}, got {show(value)}")

    def text(self, setting: Setting, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(setting, value)
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{setting.name}: must not contain line breaks or NUL")
        return value.strip()


class Number(Kind):
    """A TOML number or a numeric string (environment), finite, within [low, high]."""

    def __init__(self, expected: str, low: float, high: float, *, whole: bool) -> None:
        self.expected, self.low, self.high, self.whole = expected, low, high, whole
        self.python_type = "int" if whole else "float"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        # TOML true is no number, though Python's bool is an int.
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(setting, value)
        try:
            number = float(value)  # a string from the environment, or a TOML number
        except (ValueError, OverflowError):
            raise self.fail(setting, value) from None
        fits = math.isfinite(number) and self.low <= number <= self.high
        if not (fits and (number.is_integer() if self.whole else number > 0)):
            raise self.fail(setting, value)
        return int(number) if self.whole else number


class Folder(Kind):
    """A path; relative ones are relative to the config file's folder."""

    expected = "a path (text)"
    python_type = "Path"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        return resolve(root, self.text(setting, value))


class OptionalFile(Kind):
    """A path kept as text, ``""`` meaning unset (the send code reads it so)."""

    expected = "a path (text)"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        return str(resolve(root, text)) if text else ""


class Address(Kind):
    """One plain address (these go into headers and MAIL FROM as they are), or ``""``.

    A non-ASCII domain is kept in its IDNA form (``xn--...``), which is what goes out. A
    non-ASCII local part is refused: every copy from (or replying to) it would need SMTPUTF8
    at every server on the way to every reader, and a reader's server without it bounces
    the copy. (Subscribers' own addresses may have one: see mailer.send.headers.)
    """

    expected = "an email address"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        if text and not is_address(text):
            raise ConfigError(f"{setting.name}: {show(text)} is not an email address")
        return ascii_address(setting, text)


def ascii_address(setting: Setting, address: str) -> str:
    """``address`` with an IDNA domain; ConfigError naming the setting for a non-ASCII local
    part."""
    if address.isascii():
        return address
    found = validate_email(address, check_deliverability=False)
    if found.ascii_email is None:
        raise ConfigError(
            f"{setting.name}: {show(address)} has a non-ASCII local part, which most mail "
            "servers cannot take (SMTPUTF8); use an ASCII one (a non-ASCII domain is fine)"
        )
    return str(found.ascii_email)


class BounceAddress(Kind):
    """The VERP base: ``LOCAL+TOKEN@DOMAIN`` must fit a local part's 64 octets. The domain
    may be a local one (``bounces@localhost``): the address only ever reaches our own MTA."""

    expected = "an email address (local part up to 23 characters)"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        if not text:
            return ""
        if not is_address(text, local_domain=True):
            raise ConfigError(f"{setting.name}: {show(text)} is not an email address")
        local = text.rpartition("@")[0]
        if len(local) > VERP_LOCAL_MAX or "+" in local:
            raise ConfigError(
                f"{setting.name}: {show(text)}: the part before @ must be at most "
                f"{VERP_LOCAL_MAX} characters without '+' (the VERP token adds '+' and 40)"
            )
        return text


class BounceMailbox(Kind):
    """A Maildir path (relative to the config's folder) or an imap(s):// URL."""

    expected = "a Maildir path or imaps://user@host/MAILBOX"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        if not text or "://" in text:
            return text
        return str(resolve(root, text))


class BaseUrl(Kind):
    expected = "an http(s) URL"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        url = self.text(setting, value)
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"{setting.name}: {show(url)} must start with http:// or https://")
        if re.search(r"[\s<>\"'`?#\\]", url):  # it goes into <...> headers and links
            raise ConfigError(
                f"{setting.name}: {show(url)} must be a plain URL (no spaces, quotes, <>, ? or #)"
            )
        return url.rstrip("/")


class Mailto(Kind):
    expected = "an address or mailto: URL"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        if not text:
            return ""
        mailto = text.removeprefix("mailto:")
        address, _, query = mailto.partition("?")  # e.g. ?subject=unsubscribe
        # It goes into List-Unsubscribe as <mailto:...>: no '>', spaces or second address.
        if not is_address(address) or not query.isascii() or any(c in query for c in "<> ,"):
            raise ConfigError(
                f"{setting.name}: {show(text)} should be an address, e.g. unsubscribe@example.org"
                " or mailto:unsubscribe@example.org?subject=stop"
            )
        return "mailto:" + ascii_address(setting, address) + mailto[len(address) :]


class Choice(Kind):
    """One of a few words."""

    def __init__(self, *words: str) -> None:
        self.words = words
        self.expected = " or ".join(f'"{w}"' for w in words)

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        if text not in self.words:
            raise self.fail(setting, value)
        return text


class Language(Kind):
    """A language tag (BCP 47's shape: a 2-3 letter language, then subtags), e.g. en, de-CH."""

    expected = "a language tag like en, en-GB, de-CH or ar"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        if not _LANGUAGE.match(text):
            raise self.fail(setting, value)
        return text


_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


class Rate(Kind):
    expected = "a rate like 50/s, 3000/m or 10000/h"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        parse_rate(text)
        return text


class TimeZone(Kind):
    """An IANA time zone name that this machine's zone database knows, e.g. Europe/Berlin."""

    expected = "an IANA time zone name like UTC, Europe/Berlin or Asia/Tashkent"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        try:
            zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # ValueError: e.g. a path
            raise self.fail(setting, value) from None
        return text


_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class Networks(Kind):
    """Comma-separated IP networks (CIDR, or single addresses), kept as normalised text."""

    expected = "IP networks, comma-separated (e.g. 127.0.0.1/32, 10.0.0.0/8)"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        found = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            try:
                found.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ConfigError(
                    f"{setting.name}: {show(item)} is not an IP network like 10.0.0.0/8"
                ) from None
        return ", ".join(found)


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


class Origins(Kind):
    """Comma-separated web origins (scheme://host[:port]), kept as normalised text."""

    expected = "origins, comma-separated (e.g. https://blog.example.org)"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        text = self.text(setting, value)
        found = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            origin = item.rstrip("/").lower()
            if not _ORIGIN.match(origin):
                raise ConfigError(
                    f"{setting.name}: {show(item)} is not an origin like https://blog.example.org"
                )
            found.append(origin)
        return ", ".join(found)


# sqlite:///relative.db (three slashes, then no fourth: a relative path), keeping ?options.
_SQLITE_RELATIVE = re.compile(r"^(sqlite(?:\+\w+)?:///)(?!/)([^?]+)(\?.*)?$")


class DatabaseUrl(Kind):
    """An SQLAlchemy URL; a relative SQLite path is made relative to the config's folder."""

    expected = "a database URL (text)"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        url = self.text(setting, value)
        match = _SQLITE_RELATIVE.match(url)
        if not match or match.group(2) == ":memory:":
            return url
        prefix, path, query = match.groups()
        return f"{prefix}{resolve(root, path)}{query or ''}"


class SmtpUrl(Kind):
    """smtp://, smtps:// or maildir:PATH, a relative maildir path relative to the config."""

    expected = "an smtp://, smtps:// or maildir: URL (text)"

    def coerce(self, setting: Setting, value: object, root: Path) -> object:
        url = self.text(setting, value)
        if not url.startswith("maildir:"):
            return url
        path = url.removeprefix("maildir:").removeprefix("//")
        if not path:
            raise ConfigError(f"{setting.name}: maildir: needs a path, e.g. maildir:./outbox")
        return f"maildir:{resolve(root, path)}"


def resolve(root: Path, path: str) -> Path:
    """``path`` with ``~`` expanded, relative to ``root`` unless absolute."""
    found = Path(path).expanduser()
    return found if found.is_absolute() else root / found


def is_address(value: str, *, local_domain: bool = False) -> bool:
    """One plain address, as written (email-validator's normal form, case aside);
    ``local_domain`` also takes a single-label domain such as ``localhost`` (which
    email-validator refuses in every mode: the local part is checked with a stand-in)."""
    local, _, domain = value.rpartition("@")
    if local_domain and _LABEL.match(domain):
        value = f"{local}@{domain}.example"
    try:
        found = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return bool(found.normalized == value or found.normalized.lower() == value.lower())


TEXT = Kind()
_SECONDS_TEXT = f"a number of seconds > 0 and at most {MAX_TIMEOUT_SECONDS:g}"
SECONDS = Number(_SECONDS_TEXT, 0, MAX_TIMEOUT_SECONDS, whole=False)


def whole(low: int, high: int) -> Number:
    return Number(f"a whole number from {low} to {high}", low, high, whole=True)


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | int | float
    help: str
    group: str  # its table in the grouped form: [newsletter], [storage], ...
    kind: Kind = TEXT
    required: bool = False  # then ``default`` is unused and ``example`` goes in the starter
    secret: bool = False  # may hold a password: never in repr or error messages
    example: str | None = None  # shown in the starter (commented out unless required)
    default_doc: str = ""  # README's default column when the default is computed

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


GROUPS = {
    "newsletter": "Identity: who sends it and what the email shows",
    "storage": "Where things are",
    "smtp": "The mail server",
    "sending": "How a send goes",
    "dkim": "DKIM signing (all three or none)",
    "bounces": "Bounces and complaints (`mailer bounces`)",
    "signup": "The sign-up form (/subscribe) and its abuse limits",
}

# In the Config dataclass's field order (a test checks it, and the names and defaults).
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("name", "", "Shown in the masthead, the List-Id and the archive.", "newsletter",
            required=True, example="My Newsletter"),
    Setting("from_address", "", "The From: address.", "newsletter", Address(), required=True,
            example="newsletter@example.org"),
    Setting("postal_address", "", "Shown in every footer (the law requires it).",
            "newsletter", required=True, example="1 Example Street, Example City, Country"),
    Setting("base_url", "", "Public URL of `mailer serve`: unsubscribe links, the archive.",
            "newsletter", BaseUrl(), required=True, example="https://newsletter.example.org"),
    Setting("from_name", "", "The display name in the From: header.", "newsletter",
            example="My Newsletter"),
    Setting("reply_to", "", "Reply-To: address.", "newsletter", Address()),
    Setting("tagline", "", "The line under the name in the masthead.", "newsletter",
            example="The monthly newsletter of Example"),
    Setting("copyright", "", "Footer line.", "newsletter", example="© Example"),
    Setting("why_received", "", "Footer line: why the reader gets this email.", "newsletter",
            example="You received this email because you subscribed to My Newsletter."),
    Setting("language", "en", "The language the issues are written in: the email's lang "
            "attribute, and a right-to-left layout for Arabic, Hebrew, Persian, Urdu, ...",
            "newsletter", Language(), example="en"),
    Setting("timezone", "UTC", "The newsletter's time zone (an IANA name): a `mailer send "
            "--at` time without an offset is read in it, and times are shown in it and UTC.",
            "newsletter", TimeZone(), example="Europe/Berlin"),
    Setting("list_id_domain", "", "List-Id: a label under a domain you own, one per list.",
            "newsletter", default_doc="the name as a label under from_address's domain"),
    Setting("unsubscribe_mailto", "", "An address added to List-Unsubscribe.", "newsletter",
            Mailto(), example="unsubscribe@example.org"),
    Setting("database_url", "", "Subscriber database: sqlite:///PATH or postgresql+psycopg://"
            "user@host/db (may hold a password: never shown).", "storage", DatabaseUrl(),
            secret=True, example="postgresql+psycopg://user@127.0.0.1:5432/newsletter",
            default_doc="subscribers.db next to mailer.toml"),
    Setting("layouts_dir", "layouts", "Folder of the email's layout (newsletter.mjml.j2).",
            "storage", Folder()),
    Setting("issues_dir", "issues", "Folder of the issue folders (`mailer new` adds one).",
            "storage", Folder()),
    Setting("secret_key_file", ".mailer-secret", "Token secret(s), one per line, current "
            "first; MAILER_SECRET_KEY wins. Keep it out of git.", "storage", Folder()),
    Setting("smtp_url", "smtp://127.0.0.1:1025", "smtp://user@host:587 (STARTTLS, required "
            "unless the host is loopback), smtps://user@host:465 (TLS from the start) or "
            "maildir:PATH (write messages to a local Maildir); may hold a password: never shown.",
            "smtp", SmtpUrl(),
            secret=True),
    Setting("smtp_password_env", "MAILER_SMTP_PASSWORD", "Name of the environment variable "
            "holding the SMTP password (never shown in output or errors).", "smtp"),
    Setting("smtp_ca_file", "", "Trust this CA too, for SMTP and the IMAP bounce mailbox "
            "(certificates are always verified).",
            "smtp", OptionalFile(), example="/path/to/ca.pem"),
    Setting("smtp_timeout", 30.0, "Seconds to wait for the server.", "smtp", SECONDS),
    Setting("max_messages_per_connection", 1000, "Reconnect after this many messages.",
            "smtp", whole(1, MAX_MESSAGES_PER_CONNECTION)),
    Setting("connections", 4, "Parallel SMTP connections (`mailer send --connections`).",
            "sending", whole(1, MAX_CONNECTIONS)),
    Setting("rate", "", "At most this many messages per second, minute or hour, e.g. 50/s, "
            "3000/m, 10000/h (`mailer send --rate`).", "sending", Rate(), example="100/s",
            default_doc="unlimited"),
    Setting("send_lease_seconds", 60.0, "PostgreSQL: how long the rows a sender (`mailer send`"
            ", `mailer worker`) claimed stay its own without a renewal; a dead sender's rows "
            "are taken over after this.", "sending", SECONDS),
    Setting("envelope_sender", "", "The bounce address (MAIL FROM).", "sending", Address(),
            example="bounces@example.org", default_doc="from_address"),
    Setting("bulk_sender_rules", "enforce", "`enforce`: a send that leaves this machine is "
            "refused when Gmail's and Yahoo's bulk-sender rules would fail it (http base_url, "
            "dkim_domain not aligned with From); `warn`: it goes with a warning (see Sending).",
            "sending", Choice("enforce", "warn")),
    Setting("schedule_grace_minutes", 60, "A scheduled send that no worker started within "
            "this many minutes of its time is not started late: it is marked missed (`mailer "
            "status`) and waits for `mailer send` by hand.", "sending", whole(1, 10_080)),
    Setting("dkim_key_file", "", "Unencrypted PEM RSA private key, e.g. from `dknewkey mail`.",
            "dkim", OptionalFile(), example="mail.key"),
    Setting("dkim_selector", "", "Selector: the key is published at SELECTOR._domainkey.DOMAIN.",
            "dkim", example="mail"),
    Setting("dkim_domain", "", "The signing domain (d=).", "dkim", example="example.org"),
    Setting("bounce_address", "", "VERP: each copy's envelope sender becomes LOCAL+TOKEN@DOMAIN"
            " of this address (instead of envelope_sender), so every bounce names its delivery.",
            "bounces", BounceAddress(), example="bounces@news.example.org"),
    Setting("bounce_mailbox", "", "Where `mailer bounces` (and the worker) reads reports "
            "without an argument: a Maildir path, imaps://user@host/INBOX or imap://... "
            "(STARTTLS); may hold a password: never shown.", "bounces", BounceMailbox(),
            secret=True, example="imaps://bounces@mail.example.org/INBOX"),
    Setting("bounce_password_env", "MAILER_BOUNCE_PASSWORD", "Name of the environment "
            "variable holding the IMAP password (never shown).", "bounces"),
    Setting("bounce_processed_folder", "processed", "Handled reports are moved to this folder"
            " (in a Maildir: its .NAME subfolder).", "bounces"),
    Setting("bounce_unrecognised_folder", "unrecognised", "Reports that prove nothing or cannot"
            " be read are moved here, for a person to look at.", "bounces"),
    Setting("bounce_unrecognised_dir", "unrecognised-reports", "`mailer bounces -` (an MTA "
            "pipe) keeps unrecognised reports in this Maildir.", "bounces", Folder()),
    Setting("consent_text", "", "What people sign up for, shown above the form's button and "
            "kept (by version) with each sign-up as proof of consent.", "signup",
            default_doc="Yes, please send me NAME by email. I can unsubscribe at any time "
            "with the link in every issue."),
    Setting("signup_link_days", 7, "Days a confirmation link stays valid.", "signup",
            whole(1, 90)),
    Setting("signup_ip_rate", "20/h", "Sign-ups accepted per client IP address (an IPv6 "
            "/64 counts as one).", "signup", Rate()),
    Setting("signup_emails_per_hour", 300, "Confirmation emails per hour in all; past it "
            "sign-ups are kept but not mailed, and a warning is logged (`mailer signups "
            "resend`).", "signup", whole(1, 1_000_000)),
    Setting("trusted_proxies", "", "Reverse proxies whose X-Forwarded-For is believed "
            "(the client is the rightmost address not in these); without them the socket "
            "peer is the client.", "signup", Networks(), example="127.0.0.1/32, ::1/128"),
    Setting("signup_frame_ancestors", "", "Sites whose pages may show the sign-up form in a "
            "frame; none by default.", "signup", Origins(), example="https://blog.example.org"),
)
# fmt: on
BY_NAME = {setting.name: setting for setting in SETTINGS}


# --- documents made from the table ---------------------------------------------------------


def toml_value(value: str | int | float) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return f"{value:g}" if isinstance(value, float) else str(value)


_STARTER_HEAD = """\
# mailer.toml: the newsletter's identity and where to send from (`mailer init` wrote it).
# Every key can also be set by an environment variable MAILER_<KEY>, e.g. MAILER_BASE_URL,
# which wins over this file. Relative paths are relative to this file's folder.
# Secrets do not belong here: see secret_key_file and smtp_password_env.
# Keys may stay at the top level, as here, or go under their table ([newsletter], [storage],
# [smtp], [sending], [dkim], [bounces], [signup]); a key set in two places is an error.
# The four required keys are set; every other line shows its default or an example.
"""


def default_text(setting: Setting) -> str:
    """The default as the starter and README state it."""
    if setting.required:
        return "required"
    if setting.default_doc:
        return setting.default_doc
    return toml_value(setting.default) if setting.default != "" else "none"


def starter_text() -> str:
    """The commented starter ``mailer.toml``: required keys set, the others commented out."""
    lines = [_STARTER_HEAD]
    for group, title in GROUPS.items():
        lines.append(f"# --- [{group}] {title} ---\n")
        for setting in (s for s in SETTINGS if s.group == group):
            comment = setting.help
            value = setting.default
            if setting.example is not None:
                value = setting.example
                if not setting.required:
                    comment += f" Default: {default_text(setting)}."
            lines += textwrap.wrap(comment, 92, initial_indent="# ", subsequent_indent="# ")
            line = f"{setting.name} = {toml_value(value)}"
            lines += [line if setting.required else f"# {line}", ""]
    return "\n".join(lines)


README_START = "<!-- settings table: generated by `python -m mailer.settings README.md` -->"
README_END = "<!-- end of settings table -->"


def readme_table() -> str:
    """README's settings table, markers included."""
    rows = [README_START, "", "| key | table | value | default | |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        if s.required:
            default = "**required**"
        elif s.default_doc or s.default == "":
            default = default_text(s)
        else:
            default = f"`{default_text(s)}`"
        cells = (f"`{s.name}`", f"`[{s.group}]`", s.kind.expected, default, s.help)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join([*rows, "", README_END])


def with_readme_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by :func:`readme_table`."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError("README has no settings table markers")
    return readme[:start] + readme_table() + readme[end + len(README_END) :]


def main(argv: list[str]) -> int:
    """``python -m mailer.settings README.md``: rewrite the table; no argument: print it."""
    if not argv:
        print(readme_table())
        return 0
    path = Path(argv[0])
    try:
        path.write_text(with_readme_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
