"""The newsletter's configuration: ``mailer.toml`` overlaid with ``MAILER_<KEY>`` variables.

The file is found at ``--config``, else ``$MAILER_CONFIG``, else ``./mailer.toml``. Every key
may also come from the environment (``MAILER_BASE_URL`` for ``base_url``), which wins over
the file. Relative paths in the file are relative to the file's folder, so a config works
from any working directory.

Secrets never live in ``mailer.toml`` (it is meant to be committed): the token secret comes
from ``MAILER_SECRET_KEY`` or the git-ignored ``secret_key_file`` that ``mailer init`` writes,
and the SMTP password from the variable named by ``smtp_password_env``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from mailer.errors import ConfigError

CONFIG_FILENAME = "mailer.toml"
ENV_PREFIX = "MAILER_"
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


@dataclass(frozen=True)
class Config:
    """Validated configuration. Build it with :func:`load_config`."""

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
    smtp_ca_file: str = ""
    smtp_timeout: float = 30.0
    max_messages_per_connection: int = 1000
    connections: int = 4
    rate: str = ""
    envelope_sender: str = ""
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id value, e.g. ``Democracy in Uzbekistan <newsletter.example.org>``."""
        name = self.name
        if _SPECIALS.search(name):  # an RFC 5322 phrase may hold these only when quoted
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.list_id_domain}>"

    @property
    def sender(self) -> str:
        """The envelope sender (bounce address)."""
        return self.envelope_sender or self.from_address

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
            source = str(path)
        keys = [k.strip() for k in re.split(r"[\s,]+", raw) if k.strip()]
        if not keys:
            raise ConfigError(f"secret_key: {source} holds no key")
        if any(len(k) < 32 for k in keys):
            raise ConfigError(f"secret_key: every key in {source} must be at least 32 characters")
        return [k.encode() for k in keys]


_REQUIRED = ("name", "from_address", "postal_address", "base_url")
_PATH_KEYS = ("layouts_dir", "issues_dir", "secret_key_file")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the config file is: ``explicit``, ``$MAILER_CONFIG`` or ``./mailer.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    return Path(env) if env else Path.cwd() / CONFIG_FILENAME


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, overlay and validate the configuration; raise ConfigError naming the key."""
    file = config_path(path)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
        # Accept both a flat file and a [newsletter]/[smtp]/... grouped one.
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        data = flat
    elif path is not None or os.environ.get(ENV_PREFIX + "CONFIG"):
        raise ConfigError(f"{file}: no such config file")
    return _build(data, root=file.parent.resolve(), source=file)


def _build(data: dict[str, Any], *, root: Path, source: Path) -> Config:
    known = {f.name: f for f in fields(Config) if f.name != "root"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{key}'")
    values: dict[str, Any] = dict(data)
    for key in known:
        env = os.environ.get(ENV_PREFIX + key.upper())
        if env is not None:
            values[key] = env
    for key in _REQUIRED:
        if not str(values.get(key, "")).strip():
            raise ConfigError(
                f"{key}: missing; set it in {source} or MAILER_{key.upper()} (`mailer init` "
                "writes a starter file)"
            )
    defaults = Config(name="x", from_address="x@x.x", postal_address="x", base_url="http://x")
    typed: dict[str, Any] = {"root": root}
    for key, value in values.items():
        default = getattr(defaults, key)
        typed[key] = _coerce(key, value, default, root)
    for key in _PATH_KEYS:  # defaults too are relative to the config file's folder
        typed.setdefault(key, root / getattr(defaults, key))
    config = Config(**typed)
    return _validate(config, source)


def _coerce(key: str, value: Any, default: Any, root: Path) -> Any:
    try:
        if isinstance(default, bool):
            raise TypeError
        if isinstance(default, int) and not isinstance(default, bool):
            result: Any = int(value)
            if result < 1:
                raise ValueError
            return result
        if isinstance(default, float):
            result = float(value)
            if result <= 0:
                raise ValueError
            return result
        if isinstance(default, Path):
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else root / p
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a positive number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{key}: must not contain line breaks or NUL")
    return value.strip()


def _is_address(value: str) -> bool:
    """One plain address (these go into headers and MAIL FROM as they are)."""
    try:
        found = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return bool(found.normalized == value or found.normalized.lower() == value.lower())


def _validate(config: Config, source: Path) -> Config:
    for key in ("from_address", "reply_to", "envelope_sender"):
        value = getattr(config, key)
        if value and not _is_address(value):
            raise ConfigError(f"{key}: '{value}' is not an email address")
    if not re.match(r"^https?://[^/\s]+", config.base_url):
        raise ConfigError(f"base_url: '{config.base_url}' must start with http:// or https://")
    if re.search(r"[\s<>\"'`?#\\]", config.base_url):  # it goes into <...> headers and links
        raise ConfigError(
            f"base_url: '{config.base_url}' must be a plain URL (no spaces, quotes, <>, ? or #)"
        )
    changes: dict[str, Any] = {"base_url": config.base_url.rstrip("/")}
    if not config.list_id_domain:
        # RFC 2919: a label under a domain the sender owns, unique per list (a bare domain
        # would give every list sent from it the same List-Id).
        label = re.sub(r"[^a-z0-9]+", "-", config.name.lower()).strip("-") or "newsletter"
        changes["list_id_domain"] = f"{label}.{config.from_address.rpartition('@')[2]}"
    if not config.database_url:
        changes["database_url"] = f"sqlite:///{config.root / 'subscribers.db'}"
    if config.unsubscribe_mailto:
        mailto = config.unsubscribe_mailto.removeprefix("mailto:")
        address, _, query = mailto.partition("?")  # e.g. ?subject=unsubscribe
        # It goes into List-Unsubscribe as <mailto:...>: no '>', spaces or second address.
        if not _is_address(address) or any(c in query for c in "<> ,"):
            raise ConfigError(
                f"unsubscribe_mailto: '{config.unsubscribe_mailto}' should be an address, "
                "e.g. unsubscribe@example.org or mailto:unsubscribe@example.org?subject=stop"
            )
        changes["unsubscribe_mailto"] = "mailto:" + mailto
    if config.rate and not re.match(r"^\d+(\.\d+)?/(s|m|h|sec|min|hour)$", config.rate):
        raise ConfigError(f"rate: '{config.rate}' should look like 50/s, 3000/m or 10000/h")
    return dataclasses.replace(config, **changes)


STARTER = """\
# mailer.toml: the newsletter's identity and where to send from.
# Every key can also be set by an environment variable MAILER_<KEY>, e.g. MAILER_BASE_URL.
# Secrets do not belong here: see secret_key_file and smtp_password_env.

# --- Identity (required) ---
name = "My Newsletter"                     # shown in the masthead, List-Id and archive
from_address = "newsletter@example.org"    # the From: address
postal_address = "1 Example Street, Example City, Country"  # required in the footer by law
base_url = "https://newsletter.example.org"  # public URL of `mailer serve` (unsubscribe, archive)

# --- Identity (optional) ---
from_name = "My Newsletter"                # display name in From: (defaults to none)
reply_to = ""                              # Reply-To: address
tagline = "The monthly newsletter of Example"
copyright = "© Example"
why_received = "You received this email because you subscribed to My Newsletter."
list_id_domain = ""                        # default: my-newsletter.<from_address domain>
unsubscribe_mailto = ""                    # e.g. unsubscribe@example.org, added to List-Unsubscribe

# --- Storage ---
# database_url = "sqlite:///subscribers.db"      # default: subscribers.db next to this file
# database_url = "postgresql+psycopg://user@127.0.0.1:5432/newsletter"
secret_key_file = ".mailer-secret"        # token secret(s), one per line, current first

# --- Sending ---
# smtp://user@host:587 (STARTTLS), smtps://host:465 (TLS), or maildir:PATH
smtp_url = "smtp://127.0.0.1:1025"
smtp_password_env = "MAILER_SMTP_PASSWORD" # the variable holding the SMTP password
# smtp_ca_file = "/path/to/ca.pem"         # trust this CA in addition to the system's
# smtp_timeout = 30                        # seconds
# max_messages_per_connection = 1000       # then reconnect
connections = 4
# rate = "100/s"                           # at most this many messages per s, m or h
# envelope_sender = "bounces@example.org"
# dkim_key_file = "dkim.private"
# dkim_selector = "mail"
# dkim_domain = "example.org"
"""


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
