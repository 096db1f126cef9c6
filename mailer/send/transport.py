"""Transports: how a finished message leaves the process. The only module importing smtplib.

A :class:`Transport` opens :class:`Connection` objects; each sender thread owns one connection
and calls ``send(envelope_from, recipient, message) -> Reply`` for message after message.

``smtp://[user@]host[:587]``   STARTTLS (required unless the host is loopback)
``smtps://[user@]host[:465]``  implicit TLS
``maildir:PATH``               write each message into a local Maildir

Certificates are verified with ``ssl.create_default_context()``; ``smtp_ca_file`` adds a CA.
The password comes from the URL or, better, from the environment variable named by
``smtp_password_env``; it is never part of a message, a ``repr`` or an exception.

Failures are split in two. Per message: the server's reply, classified by :class:`Reply`
(2xx sent, 4xx deferred, 5xx failed). Per run: :class:`~mailer.errors.TransportError` when
the server cannot be used at all (unreachable, TLS or authentication failure, the envelope
sender refused), which stops the run. A 421 or a dropped connection in the middle of a
message re-opens the connection and tries that message again (a bounded number of times).
"""

from __future__ import annotations

import contextlib
import mailbox
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mailer.config import Config
from mailer.errors import ConfigError, TransportError
from mailer.send.relay import SmtpTarget, smtp_target

# A 5.1.x enhanced status (bad destination mailbox) or a 550 that says so: the address is gone.
_NO_SUCH_USER = re.compile(
    r"^5\.1\.\d|no such (user|mailbox|recipient)|user unknown|unknown (user|recipient)"
    r"|does not exist",
    re.IGNORECASE,
)
_ATTEMPTS_PER_MESSAGE = 3


@dataclass(frozen=True)
class Reply:
    """The server's final answer to one message (or a synthetic one for a lost connection)."""

    code: int
    text: str
    # Whether the server answered the message itself (the reply to the final dot), rather
    # than the envelope or the connection: a 5xx there may be about the content, not the
    # recipient (see the send run's circuit breaker).
    to_message: bool = False

    @property
    def outcome(self) -> str:
        """``sent`` (2xx), ``deferred`` (4xx, try later) or ``failed`` (5xx, permanent)."""
        if 200 <= self.code < 300:
            return "sent"
        if 400 <= self.code < 500:
            return "deferred"
        return "failed"

    @property
    def no_such_user(self) -> bool:
        """A permanent failure saying the mailbox does not exist (the subscriber bounced)."""
        return self.code >= 500 and bool(_NO_SUCH_USER.search(self.text))

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


Gate = Callable[[], None]
"""Called right before a message is committed to the server (the final ``.`` of DATA).

It blocks until sending may go on, or raises to abandon the message: the connection is then
dropped without the final dot, so the server discards it. The send run uses it to wait for
the previous outcome's commit while this message's envelope and body are already on the wire.
"""


class Connection(Protocol):
    """One connection, owned by one thread."""

    def send(
        self, envelope_from: str, recipient: str, message: bytes, gate: Gate | None = None
    ) -> Reply: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Opens connections; ``describe`` is safe to print (no password)."""

    def connect(self) -> Connection: ...

    def describe(self) -> str: ...


def transport_from_config(config: Config) -> Transport:
    """The transport named by ``config.smtp_url``."""
    url = config.smtp_url
    if url.startswith("maildir:"):
        path = Path(url.removeprefix("maildir:").removeprefix("//"))
        if not str(path):
            raise ConfigError("smtp_url: maildir: needs a path, e.g. maildir:./outbox")
        return MaildirTransport(path if path.is_absolute() else config.root / path)
    return SmtpTransport(smtp_target(config))


# --- SMTP --------------------------------------------------------------------------------


class SmtpTransport:
    def __init__(self, target: SmtpTarget) -> None:
        self.target = target
        context = ssl.create_default_context()
        if target.ca_file:
            try:
                context.load_verify_locations(cafile=target.ca_file)
            except (ssl.SSLError, OSError, ValueError):
                raise ConfigError(
                    f"smtp_ca_file: {target.ca_file} holds no PEM certificate to trust"
                ) from None
        self._context = context

    def connect(self) -> SmtpConnection:
        return SmtpConnection(self.target, self._context)

    def describe(self) -> str:
        return self.target.describe()

    def __repr__(self) -> str:
        return f"SmtpTransport({self.describe()})"


class SmtpConnection:
    """One SMTP session, opened lazily, re-opened after a 421, a drop or the message cap."""

    def __init__(self, target: SmtpTarget, context: ssl.SSLContext) -> None:
        self.target = target
        self._context = context
        self._smtp: smtplib.SMTP | None = None
        self._sent_on_session = 0
        self.sessions = 0  # how many times a session was opened (for tests and stats)

    def send(
        self, envelope_from: str, recipient: str, message: bytes, gate: Gate | None = None
    ) -> Reply:
        """Deliver one message; ``message`` has CRLF line ends and no line starting with '.'."""
        lost = ""
        for _ in range(_ATTEMPTS_PER_MESSAGE):
            smtp = self._smtp or self._open()
            try:
                reply = self._transaction(smtp, envelope_from, recipient, message, gate)
            except TransportError:
                raise
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                # Dropped before the final reply: not delivered as far as we can know (RFC 5321
                # 6.1); try again on a fresh session. This is the "in flight" duplicate risk.
                self._drop()
                lost = _describe_os_error(exc)
                continue
            if reply.code == 421:  # the server is closing this session: reconnect, try again
                self._drop()
                lost = str(reply)
                continue
            self._sent_on_session += 1
            if self._sent_on_session >= self.target.max_messages_per_connection:
                self.close()
            return reply
        return Reply(451, f"4.4.2 connection lost {_ATTEMPTS_PER_MESSAGE} times: {lost}")

    def close(self) -> None:
        """QUIT politely; never raises."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    # -- internals --

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        envelope_from: str,
        recipient: str,
        message: bytes,
        gate: Gate | None,
    ) -> Reply:
        mail_from = f"MAIL FROM:<{envelope_from}>"
        if not (envelope_from.isascii() and recipient.isascii()):
            # A UTF-8 local part (RFC 6531): only through a server that takes it, and then the
            # UTF-8 header that names it too (8BITMIME comes with SMTPUTF8).
            if not smtp.has_extn("smtputf8"):
                return Reply(
                    553,
                    f"5.6.7 not sent: <{recipient}> has a non-ASCII local part, which needs "
                    f"SMTPUTF8, and {self.target.host}:{self.target.port} does not offer it",
                )
            mail_from += " SMTPUTF8" + (" BODY=8BITMIME" if smtp.has_extn("8bitmime") else "")
        if smtp.does_esmtp and smtp.has_extn("pipelining"):
            # RFC 2920: one write, three replies (two round trips per message instead of four).
            smtp.send(f"{mail_from}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
            mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
        else:
            mail = _command(smtp, mail_from)
            rcpt = _command(smtp, f"RCPT TO:<{recipient}>") if mail[0] == 250 else (503, b"")
            data = _command(smtp, "DATA") if rcpt[0] in (250, 251) else (503, b"")
        failed = next(
            (r for r, ok in ((mail, (250,)), (rcpt, (250, 251)), (data, (354,))) if r[0] not in ok),
            None,
        )
        if failed is not None:
            if data[0] == 354:  # a server that accepted DATA anyway: abandon the session
                self._drop()
            elif failed[0] != 421:
                self._reset(smtp)
            if failed is mail and 500 <= mail[0] < 600:
                # Refusing the sender refuses every message: stop rather than fail everyone.
                self.close()
                raise TransportError(
                    f"{self.target} refused the envelope sender <{envelope_from}>: "
                    f"{mail[0]} {_text(mail[1])}"
                )
            return Reply(failed[0], _text(failed[1]))
        # The body is built so it needs no dot-stuffing or line-end fixing (see message.py).
        smtp.send(message)
        if gate is not None:
            try:
                gate()
            except BaseException:
                self._drop()  # no final dot: the server discards the message
                raise
        smtp.send(b".\r\n")
        code, text = smtp.getreply()
        return Reply(code, _text(text), to_message=True)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()  # the reply stands; the next message opens a new session

    def _open(self) -> smtplib.SMTP:
        target = self.target
        where = f"{target.host}:{target.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if target.scheme == "smtps":
                smtp = smtplib.SMTP_SSL(
                    target.host, target.port, timeout=target.timeout, context=self._context
                )
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=target.timeout)
            smtp.ehlo()
            if target.scheme == "smtp":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=self._context)
                    smtp.ehlo()
                elif not target.loopback:
                    raise TransportError(
                        f"{where} does not offer STARTTLS; refusing to send in clear text "
                        "(use smtps:// for implicit TLS)"
                    )
            if target.username:
                if not smtp.has_extn("auth"):
                    raise TransportError(f"{where} does not offer AUTH (after TLS)")
                smtp.login(target.username, target.password)
        except TransportError:
            _close_quietly(smtp)
            raise
        except ssl.SSLError as exc:
            _close_quietly(smtp)
            reason = getattr(exc, "verify_message", "") or exc.reason or type(exc).__name__
            raise TransportError(f"TLS with {where} failed: {reason}") from None
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            raise TransportError(
                f"authentication as {target.username!r} at {where} failed: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            _close_quietly(smtp)
            raise TransportError(
                f"{where} refused the session: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            _close_quietly(smtp)
            raise TransportError(f"cannot connect to {where}: {_describe_os_error(exc)}") from None
        self._smtp = smtp
        self._sent_on_session = 0
        self.sessions += 1
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        _close_quietly(smtp)


def _command(smtp: smtplib.SMTP, line: str) -> tuple[int, bytes]:
    """One command (UTF-8: an SMTPUTF8 address may be in it) and its reply."""
    smtp.send(line.encode() + b"\r\n")
    return smtp.getreply()


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --- Maildir -----------------------------------------------------------------------------


class MaildirTransport:
    """Writes each message into a Maildir (``new/``), as a local delivery agent would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # sender threads connect at once; create the box once

    def connect(self) -> MaildirConnection:
        try:
            with self._lock:
                return MaildirConnection(mailbox.Maildir(self.path, create=True))
        except OSError as exc:
            raise TransportError(
                f"cannot open maildir {self.path}: {_describe_os_error(exc)}"
            ) from None

    def describe(self) -> str:
        return f"maildir:{self.path}"


class MaildirConnection:
    def __init__(self, box: mailbox.Maildir) -> None:
        self._box = box

    def send(
        self, envelope_from: str, recipient: str, message: bytes, gate: Gate | None = None
    ) -> Reply:
        envelope = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {recipient}\r\n".encode()
        if gate is not None:
            gate()
        try:
            key = self._box.add(envelope + message)
        except OSError as exc:
            raise TransportError(f"cannot write to maildir: {_describe_os_error(exc)}") from None
        return Reply(250, f"2.0.0 stored as {key}", to_message=True)

    def close(self) -> None:
        return None
