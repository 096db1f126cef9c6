"""Where the mail goes: ``smtp_url`` parsed into a :class:`SmtpTarget`, and whether a send
stays on this machine. No smtplib here (mailer.send.transport speaks SMTP)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mailer.config import Config
from mailer.errors import ConfigError


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect. ``password`` is excluded from ``repr``."""

    scheme: str
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    timeout: float = 30.0
    max_messages_per_connection: int = 1000

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.describe()


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: a relay on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stays_local(config: Config) -> bool:
    """Whether ``smtp_url`` leaves the machine neither: ``maildir:`` or a loopback relay
    (``mailer sink``, a test server, a local MTA)."""
    if config.smtp_url.startswith("maildir:"):
        return True
    try:
        host = urlsplit(config.smtp_url).hostname
    except ValueError:
        return False
    return host is not None and is_loopback(host)


def smtp_target(config: Config) -> SmtpTarget:
    """Parse ``smtp_url``; raise ConfigError (never showing the password)."""
    try:
        parts = urlsplit(config.smtp_url)
        port = parts.port
    except ValueError:
        raise ConfigError("smtp_url: cannot parse it (expected smtp://host:port)") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            "smtp_url: expected smtp://[user@]host[:port], smtps://... or maildir:PATH"
        )
    username = unquote(parts.username or "")
    password = unquote(parts.password or "") or os.environ.get(config.smtp_password_env, "")
    if username and not password:
        raise ConfigError(
            f"smtp_url: user {username!r} needs a password: set {config.smtp_password_env}"
        )
    if config.smtp_ca_file and not Path(config.smtp_ca_file).is_file():
        raise ConfigError(f"smtp_ca_file: {config.smtp_ca_file} does not exist")
    return SmtpTarget(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 587),
        username=username,
        password=password,
        ca_file=config.smtp_ca_file,
        timeout=config.smtp_timeout,
        max_messages_per_connection=config.max_messages_per_connection,
    )
