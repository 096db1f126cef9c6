"""Reports from an IMAP mailbox: ``imaps://user@host[:port]/MAILBOX`` or ``imap://...``.

``imaps://`` is TLS from the start (port 993); ``imap://`` upgrades with STARTTLS (port 143)
and refuses to log in without it unless the host is loopback. Certificates are always
verified (``smtp_ca_file`` adds a CA). The password comes from the URL or, better, from the
environment variable named by ``bounce_password_env``; it is never printed.

Messages are read with ``BODY.PEEK[]`` (their \\Seen flag stays as it was) and moved with
``UID MOVE`` (RFC 6851), or ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` of that one UID
(RFC 4315) where MOVE is missing; with neither, the copy is made and the original only
flagged \\Deleted, never expunged. This is the standard library's imaplib by hand because
imap-tools' fallback move expunges every \\Deleted message of the folder, also messages that
are not ours to remove.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from mailer.bounces.maildir import MAX_REPORT_BYTES, Item
from mailer.bounces.ports import Kind
from mailer.errors import ConfigError, MailboxError

__all__ = ["ImapBox", "ImapTarget", "imap_target"]

_BATCH = 200  # UIDs fetched per round trip


@dataclass(frozen=True)
class ImapTarget:
    scheme: str
    host: str
    port: int
    username: str
    mailbox: str
    password: str = field(default="", repr=False)
    ca_file: str = ""
    timeout: float = 30.0

    def describe(self) -> str:
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{self.mailbox}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def imap_target(
    url: str, *, password_env: str, ca_file: str = "", timeout: float = 30.0
) -> ImapTarget:
    """Parse an IMAP mailbox URL; raise ConfigError (never showing the password)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("bounce mailbox: cannot parse the IMAP URL") from None
    if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
        raise ConfigError("bounce mailbox: expected imaps://user@host[:port]/MAILBOX")
    username = unquote(parts.username)
    password = unquote(parts.password or "") or os.environ.get(password_env, "")
    if not password:
        raise ConfigError(f"bounce mailbox: user {username!r} needs a password: set {password_env}")
    return ImapTarget(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (993 if parts.scheme == "imaps" else 143),
        username=username,
        mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        password=password,
        ca_file=ca_file,
        timeout=timeout,
    )


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: object) -> str:
    """The server's words from an imaplib answer or error, one line."""
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return " ".join(str(data).split())[:200]


class ImapBox:
    """One IMAP mailbox; handled messages are moved to the processed/unrecognised folders."""

    source = "imap"

    def __init__(self, target: ImapTarget, processed: str, unrecognised: str) -> None:
        self.target = target
        self.folders = {Kind.UNRECOGNISED: unrecognised}
        self.processed = processed
        self._created: set[str] = set()
        self.client = self._login()
        try:
            status, data = self.client.select(_quote(target.mailbox))
            if status != "OK":
                raise MailboxError(f"{target.describe()}: no such mailbox ({_said(data)})")
            # Ask again: servers announce MOVE and UIDPLUS only after the login.
            _, data = self.client.capability()
            found = data[0] if data and isinstance(data[0], bytes) else b""
            capabilities = set(found.decode("ascii", "replace").upper().split())
            self._can_move = "MOVE" in capabilities
            self._uidplus = "UIDPLUS" in capabilities
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        return self.target.describe()

    def _login(self) -> imaplib.IMAP4:
        target, where = self.target, self.target.describe()
        context = ssl.create_default_context()
        if target.ca_file:
            context.load_verify_locations(cafile=target.ca_file)
        client: imaplib.IMAP4 | None = None
        try:
            if target.scheme == "imaps":
                client = imaplib.IMAP4_SSL(
                    target.host, target.port, ssl_context=context, timeout=target.timeout
                )
            else:
                client = imaplib.IMAP4(target.host, target.port, timeout=target.timeout)
                if "STARTTLS" in client.capabilities:
                    client.starttls(ssl_context=context)
                elif not target.loopback:
                    raise MailboxError(f"{where} does not offer STARTTLS; refusing to log in")
            client.login(target.username, target.password)
        except MailboxError:
            _logout(client)
            raise
        except ssl.SSLError as exc:
            _logout(client)
            raise MailboxError(f"{where}: TLS failed: {exc.reason or exc}") from None
        except (TimeoutError, OSError) as exc:
            _logout(client)
            raise MailboxError(f"cannot reach {where}: {exc.strerror or exc}") from None
        except imaplib.IMAP4.error as exc:
            _logout(client)
            # The server's words only: imaplib never puts the password in them.
            raise MailboxError(f"{where}: login refused: {_said(exc.args)}") from None
        return client

    def messages(self) -> Iterator[Item]:
        status, data = self._command("SEARCH", "UNDELETED")
        found = data[0] if status == "OK" and data else b""
        uids = found.split() if isinstance(found, bytes) else []
        for start in range(0, len(uids), _BATCH):
            batch = b",".join(uids[start : start + _BATCH]).decode()
            status, data = self._command("FETCH", batch, "(UID RFC822.SIZE BODY.PEEK[])")
            for entry in data:
                if not isinstance(entry, tuple):
                    continue
                uid = re.search(rb"UID (\d+)", entry[0])
                if uid is not None:
                    yield Item(uid.group(1).decode(), entry[1][:MAX_REPORT_BYTES])

    def move(self, item: Item, kind: Kind) -> bool:
        folder = self._folder(self.folders.get(kind, self.processed))
        if self._can_move:
            status, data = self._command("MOVE", item.ref, folder)
            return status == "OK" or self._gone(data)
        status, data = self._command("COPY", item.ref, folder)
        if status != "OK":
            return self._gone(data)
        self._command("STORE", item.ref, "+FLAGS.SILENT", r"(\Deleted)")
        if self._uidplus:
            self._command("EXPUNGE", item.ref)
        return True

    def _gone(self, data: object) -> bool:
        # Another process moved it first (the UID no longer exists): not an error.
        words = _said(data).lower()
        if "nonexistent" in words or "no such message" in words or "expunged" in words:
            return False
        raise MailboxError(f"{self.describe()}: cannot move a message: {_said(data)}")

    def _folder(self, name: str) -> str:
        quoted = _quote(name)
        if name not in self._created:
            status, data = self.client.create(quoted)
            words = _said(data).lower()
            if status != "OK" and "exist" not in words:
                raise MailboxError(f"{self.describe()}: cannot create folder {name!r}: {words}")
            self._created.add(name)
        return quoted

    def _command(self, command: str, *args: str) -> tuple[str, list[object]]:
        try:
            status, data = self.client.uid(command, *args)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"{self.describe()}: {command} failed: {_said(exc.args)}") from None
        return status, list(data)

    def close(self) -> None:
        _logout(getattr(self, "client", None))


def _logout(client: imaplib.IMAP4 | None) -> None:
    if client is None:
        return
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()
