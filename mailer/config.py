"""The newsletter's configuration: ``mailer.toml`` overlaid with ``MAILER_<KEY>`` variables.

The file is found at ``--config``, else ``$MAILER_CONFIG``, else ``./mailer.toml``. Every key
may also come from the environment (``MAILER_BASE_URL`` for ``base_url``), which wins over
the file. Relative paths are relative to the file's folder, so a config works from any
working directory. Keys may sit at the top level or under their table (``[smtp]`` ...), never
in two places. What each key is, its default and its check come from the one table in
:mod:`mailer.settings`.

Secrets never live in ``mailer.toml`` (it is meant to be committed): the token secret comes
from ``MAILER_SECRET_KEY`` or the git-ignored ``secret_key_file`` that ``mailer init`` writes,
and the SMTP password from the variable named by ``smtp_password_env``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailer.errors import ConfigError
from mailer.settings import (
    BY_NAME,
    ENV_PREFIX,
    GROUPS,
    MAX_CONNECTIONS,
    SETTINGS,
    parse_rate,
    starter_text,
)

__all__ = [
    "CONFIG_FILENAME",
    "ENV_PREFIX",
    "MAX_CONNECTIONS",
    "STARTER",
    "Config",
    "config_path",
    "default_consent_text",
    "ensure_secret_key",
    "load_config",
    "parse_rate",
    "write_starter",
]

CONFIG_FILENAME = "mailer.toml"
_UNSET = object()
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


@dataclass(frozen=True)
class Config:
    """Validated configuration. Build it with :func:`load_config`.

    The fields are the settings of :data:`mailer.settings.SETTINGS` (same names, order and
    defaults; a test checks), typed here for mypy, plus ``root``, the config file's folder.
    Every path is absolute: relative ones in the file were resolved against ``root``.
    """

    # Identity (required).
    name: str
    from_address: str
    postal_address: str
    base_url: str
    # Identity (optional).
    from_name: str = ""
    reply_to: str = ""
    tagline: str = ""
    copyright: str = ""
    why_received: str = ""  # footer line: why the reader gets this email
    language: str = "en"  # a language tag: <html lang>, and dir from it
    timezone: str = "UTC"  # an IANA name: `send --at` without an offset, times shown
    list_id_domain: str = ""
    unsubscribe_mailto: str = ""
    # Where things are.
    root: Path = field(default_factory=Path.cwd)
    # URLs may hold a password: kept out of repr (and so out of tracebacks and logs).
    database_url: str = field(default="", repr=False)
    layouts_dir: Path = Path("layouts")
    issues_dir: Path = Path("issues")
    secret_key_file: Path = Path(".mailer-secret")
    # Sending.
    smtp_url: str = field(default="smtp://127.0.0.1:1025", repr=False)
    smtp_password_env: str = "MAILER_SMTP_PASSWORD"
    smtp_ca_file: str = ""  # a path, "" for none (also dkim_key_file)
    smtp_timeout: float = 30.0
    max_messages_per_connection: int = 1000
    connections: int = 4
    rate: str = ""
    send_lease_seconds: float = 60.0  # cooperating senders' lease (mailer.store.claims)
    envelope_sender: str = ""
    bulk_sender_rules: str = "enforce"  # or "warn" (mailer.send.readiness)
    schedule_grace_minutes: int = 60  # a schedule not started this late is marked missed
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    # Bounces and complaints.
    bounce_address: str = ""
    bounce_mailbox: str = field(default="", repr=False)  # an IMAP URL may hold a password
    bounce_password_env: str = "MAILER_BOUNCE_PASSWORD"
    bounce_processed_folder: str = "processed"
    bounce_unrecognised_folder: str = "unrecognised"
    bounce_unrecognised_dir: Path = Path("unrecognised-reports")
    # The sign-up form.
    consent_text: str = ""  # computed from the name when not set
    signup_link_days: int = 7
    signup_ip_rate: str = "20/h"
    signup_emails_per_hour: int = 300
    trusted_proxies: str = ""
    signup_frame_ancestors: str = ""

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id value, e.g. ``Democracy in Uzbekistan <newsletter.example.org>``."""
        name = self.name
        if _SPECIALS.search(name):  # an RFC 5322 phrase may hold these only when quoted
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.list_id_domain}>"

    @property
    def sender(self) -> str:
        """The envelope sender (bounce address) without a VERP token: test copies use it,
        and every copy when ``bounce_address`` is not set."""
        return self.bounce_address or self.envelope_sender or self.from_address

    def secret_keys(self) -> list[bytes]:
        """Token secrets, current first, then older ones still accepted (see README)."""
        raw = os.environ.get(ENV_PREFIX + "SECRET_KEY")
        source = "MAILER_SECRET_KEY"
        if raw is None:
            path = self.secret_key_file
            try:
                raw = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(
                    f"secret_key_file: {path} does not exist; run `mailer init` "
                    "or set MAILER_SECRET_KEY"
                ) from None
            except OSError as exc:
                raise ConfigError(f"secret_key_file: cannot read {path}: {exc.strerror}") from None
            except UnicodeDecodeError as exc:  # the bytes are never shown: they are the secret
                raise ConfigError(
                    f"secret_key_file: {path} is not UTF-8 text (byte {exc.start}); "
                    "write the key(s) as text, one per line"
                ) from None
            source = str(path)
        keys = [k.strip() for k in re.split(r"[\s,]+", raw) if k.strip()]
        if not keys:
            raise ConfigError(f"secret_key: {source} holds no key")
        if any(len(k) < 32 for k in keys):
            raise ConfigError(f"secret_key: every key in {source} must be at least 32 characters")
        return [k.encode() for k in keys]


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the config file is: ``explicit``, ``$MAILER_CONFIG`` or ``./mailer.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    return Path(env) if env else Path.cwd() / CONFIG_FILENAME


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, overlay and validate the configuration; raise ConfigError naming the key."""
    file = config_path(path)
    data: dict[str, object] = {}
    try:
        found = file.exists()
    except OSError as exc:  # e.g. its folder cannot be searched (permission denied)
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if found:
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
        data = _flatten(document, file)
    elif path is not None or os.environ.get(ENV_PREFIX + "CONFIG"):
        raise ConfigError(f"{file}: no such config file")
    return _build(data, root=file.parent.resolve(), source=file)


_TOP = "the top level"


def _flatten(document: dict[str, Any], source: Path) -> dict[str, object]:
    """One value per key, from the flat form, the grouped form ([smtp] ...) or a mix.

    A key set in two places (two tables, or the top level and a table) is an error naming
    both; so is a key under a table that is not its own.
    """
    places: dict[str, list[str]] = {}
    values: dict[str, object] = {}
    for key, value in document.items():
        inner = value if isinstance(value, dict) and key not in BY_NAME else {key: value}
        place = _TOP if inner is not value else f"[{key}]"
        if place != _TOP and key not in GROUPS:
            tables = ", ".join(f"[{g}]" for g in GROUPS)
            raise ConfigError(f"{source}: unknown table [{key}] (the tables are {tables})")
        for name, item in inner.items():
            if name not in BY_NAME:
                where = "" if place == _TOP else f" in {place}"
                hint = difflib.get_close_matches(name, BY_NAME, n=1)
                also = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(f"{source}: unknown key '{name}'{where}{also}")
            places.setdefault(name, []).append(place)
            values[name] = item
    for name, found in places.items():
        if len(found) > 1:
            raise ConfigError(f"{source}: {name} is set twice: in {found[0]} and in {found[1]}")
        group = BY_NAME[name].group
        if found[0] not in (_TOP, f"[{group}]"):
            raise ConfigError(f"{source}: {name} belongs in [{group}], not in {found[0]}")
    return values


def _build(data: dict[str, object], *, root: Path, source: Path) -> Config:
    """Overlay the environment, then coerce every setting with its kind (in table order)."""
    raw: dict[str, object] = {}
    for setting in SETTINGS:
        value = os.environ.get(setting.env, data.get(setting.name, _UNSET))
        if setting.required and (value is _UNSET or not str(value).strip()):
            raise ConfigError(
                f"{setting.name}: missing; set it in {source} or {setting.env} (`mailer init` "
                "writes a starter file)"
            )
        raw[setting.name] = setting.default if value is _UNSET else value
    typed: dict[str, Any] = {s.name: s.kind.coerce(s, raw[s.name], root) for s in SETTINGS}
    config = Config(root=root, **typed)  # each kind returns its field's type (a test checks)
    return _with_derived(config)


def _with_derived(config: Config) -> Config:
    """The defaults computed from other settings filled in."""
    list_id_domain = config.list_id_domain
    if not list_id_domain:
        # RFC 2919: a label under a domain the sender owns, unique per list (a bare domain
        # would give every list sent from it the same List-Id).
        label = re.sub(r"[^a-z0-9]+", "-", config.name.lower()).strip("-") or "newsletter"
        list_id_domain = f"{label}.{config.from_address.rpartition('@')[2]}"
    database_url = config.database_url or f"sqlite:///{config.root / 'subscribers.db'}"
    consent_text = config.consent_text or default_consent_text(config.name)
    return dataclasses.replace(
        config,
        list_id_domain=list_id_domain,
        database_url=database_url,
        consent_text=consent_text,
    )


def default_consent_text(name: str) -> str:
    """The consent text when ``consent_text`` is not set (README's settings table says it)."""
    return (
        f"Yes, please send me {name} by email. I can unsubscribe at any time with the link "
        "in every issue."
    )


STARTER = starter_text()


def write_starter(path: Path) -> bool:
    """Write a commented starter config unless one exists. Return True if written."""
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(STARTER)
    except FileExistsError:
        return False
    return True


def ensure_secret_key(path: Path) -> bool:
    """Create the token secret file (mode 0600) unless it exists. Return True if created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    return True
