"""Where the test mail servers are: the fixed values of scripts/test-services.env.

The script sources that file and this module reads it, so the two never disagree.
"""

from __future__ import annotations

import email
import email.policy
import secrets
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[2]
ENV_FILE = REPO / "scripts" / "test-services.env"
REQUIRE_ENV = "MAILER_REQUIRE_MTA"  # set (to 1) by .ci/run: a missing server fails, not skips
WAIT = 30.0  # seconds a test waits for mail; local delivery takes well under one


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


_ENV = _read_env(ENV_FILE)
SMTP_HOST = _ENV["MTA_HOST"]  # every server listens here only: 127.0.0.1
SMTP_PORT = int(_ENV["SMTP_PORT"])  # Postfix: 25
SMTP_BANNER = _ENV["SMTP_BANNER"]  # in Postfix's greeting, so a test knows it is this one
MAILBOX_USER = _ENV["MAILBOX_USER"]  # mailer-bounces: the one local mailbox (and IMAP user)
MAILBOX_ALIAS = _ENV["MAILBOX_ALIAS"]  # bounces: an alias of it
MAILBOX_PASSWORD = _ENV["MAILBOX_PASSWORD"]  # its IMAP password
BOUNCE_DOMAIN = _ENV["BOUNCE_DOMAIN"]  # localhost
MAILDIR = Path(_ENV["MAILBOX_HOME"]) / "Maildir"
IMAP_PORT = int(_ENV["IMAP_PORT"])  # Dovecot, STARTTLS offered: 143
IMAPS_PORT = int(_ENV["IMAPS_PORT"])  # Dovecot, implicit TLS: 993
CA_FILE = Path(_ENV["TLS_DIR"]) / "ca.pem"  # the test CA that signed both servers' certificate
_FIRST_SINK = int(_ENV["SINK_FIRST_PORT"])
SINK_PORTS = range(_FIRST_SINK, _FIRST_SINK + int(_ENV["SINK_PORT_COUNT"]))
SINK_DOMAIN_SUFFIX = _ENV["SINK_DOMAIN_SUFFIX"]  # mail to pPORT.sink.test -> 127.0.0.1:PORT
SMTP_SINK = "/usr/sbin/smtp-sink"


def tls_context() -> ssl.SSLContext:
    """A client context that verifies the servers' certificates against the test CA only."""
    return ssl.create_default_context(cafile=str(CA_FILE))


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))


def new_token() -> str:
    """A token unique to one test, for VERP addresses, Message-IDs and folder names."""
    return secrets.token_hex(8)
