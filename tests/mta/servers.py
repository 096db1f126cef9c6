"""Clients of the test mail servers: Postfix, its Maildir, smtp-sink, Dovecot."""

from __future__ import annotations

import contextlib
import fcntl
import imaplib
import os
import pwd
import secrets
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from tests.mta.env import (
    BOUNCE_DOMAIN,
    CA_FILE,
    IMAP_PORT,
    IMAPS_PORT,
    MAILBOX_ALIAS,
    MAILBOX_PASSWORD,
    MAILBOX_USER,
    MAILDIR,
    SINK_DOMAIN_SUFFIX,
    SINK_PORTS,
    SMTP_HOST,
    SMTP_PORT,
    SMTP_SINK,
    WAIT,
    parse,
    tls_context,
)

Reply = tuple[int, bytes]


@dataclass(frozen=True)
class Postfix:
    host: str = SMTP_HOST
    port: int = SMTP_PORT
    ca_file: Path = CA_FILE

    @property
    def smtp_url(self) -> str:
        """For mailer's ``smtp_url``; set ``smtp_ca_file`` to ``ca_file`` (STARTTLS is offered)."""
        return f"smtp://{self.host}:{self.port}"

    def send(self, raw: bytes, *, mail_from: str, to: Sequence[str]) -> dict[str, Reply]:
        """Submit ``raw`` (CRLF line ends: smtplib sends bytes as they are) over verified
        STARTTLS; returns the refused recipients as smtplib does (all refused: it raises)."""
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            smtp.starttls(context=tls_context())
            return smtp.sendmail(mail_from, list(to), raw)

    def flush(self) -> None:
        """Retry deferred mail now, forgetting which destinations were down."""
        subprocess.run(["postqueue", "-f"], check=True, capture_output=True, timeout=30)


# -- the Maildir ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """One message in the Maildir: ``name`` is its Maildir unique name (stable across flags)."""

    name: str
    raw: bytes
    message: EmailMessage


@dataclass
class Mailbox:
    """The INBOX of MAILBOX_USER, read and written as files (Dovecot serves the same)."""

    path: Path = MAILDIR
    user: str = MAILBOX_USER
    domain: str = BOUNCE_DOMAIN
    mine: set[str] = field(default_factory=set)  # names handed out or put: removed by cleanup()

    def address(self, token: str, *, alias: bool = False) -> str:
        """``mailer-bounces+TOKEN@localhost`` (or ``bounces+TOKEN@localhost``)."""
        return f"{MAILBOX_ALIAS if alias else self.user}+{token}@{self.domain}"

    def put(self, raw: bytes, folder: str = "") -> str:
        """Deliver ``raw`` as an MDA would, into INBOX or an existing folder; its name."""
        root = self.path / f".{folder}" if folder else self.path
        name = f"{time.time_ns()}.M{secrets.token_hex(6)}P{os.getpid()}.mailer-test"
        tmp = root / "tmp" / name
        tmp.write_bytes(raw)
        with contextlib.suppress(KeyError, PermissionError):
            owner = pwd.getpwnam(self.user)
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        tmp.rename(root / "new" / name)
        self.mine.add(name)
        return name

    def messages(self) -> Iterator[Delivered]:
        """INBOX now. Dovecot may move a file from new/ to cur/ under us: skip it this time."""
        for sub in ("new", "cur"):
            # `with`: a caller that stops early (next(...)) closes the listing too.
            with contextlib.suppress(FileNotFoundError), os.scandir(self.path / sub) as entries:
                for entry in entries:
                    try:
                        raw = Path(entry.path).read_bytes()
                    except FileNotFoundError:
                        continue
                    yield Delivered(entry.name.split(":", 1)[0], raw, parse(raw))

    def wait_for(self, match: Callable[[EmailMessage], bool], timeout: float = WAIT) -> Delivered:
        """The first INBOX message ``match`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.messages() if match(m.message)), None)
            if found is not None:
                self.mine.add(found.name)
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching message in {self.path} after {timeout:.0f}s")
            time.sleep(0.1)

    def wait_for_token(self, token: str, timeout: float = WAIT) -> Delivered:
        """The message delivered to ``+TOKEN`` (by X-Original-To, which Postfix adds)."""

        def to_token(message: EmailMessage) -> bool:
            local = str(message.get("X-Original-To", "")).partition("@")[0]
            return local.partition("+")[2] == token

        return self.wait_for(to_token, timeout)

    def remove(self, name: str) -> None:
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError), os.scandir(self.path / sub) as entries:
                for entry in entries:
                    if entry.name.split(":", 1)[0] == name:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)

    def cleanup(self) -> None:
        for name in self.mine:
            self.remove(name)


# -- smtp-sink ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkMessage:
    """What smtp-sink received: the envelope, and the message as Postfix relayed it (``raw``
    with CRLF line ends, as on the wire)."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes
    message: EmailMessage


def _parse_dump(dump: bytes) -> SinkMessage:
    # smtp-sink's dump: X-Client-Addr/-Proto, X-Helo-Args, X-Mail-Args, X-Rcpt-Args lines,
    # its own three-line Received header, the message, and one empty line (LF endings).
    lines = dump.split(b"\n")
    mail_from, rcpts, at = "", [], 0
    while at < len(lines) and not lines[at].startswith(b"Received: "):
        key, _, value = lines[at].decode("utf-8", "replace").partition(": ")
        if key == "X-Mail-Args":
            mail_from = value.split()[0].strip("<>")
        elif key == "X-Rcpt-Args":
            rcpts.append(value.split()[0].strip("<>"))
        at += 1
    text = b"\n".join(lines[at + 3 :]).removesuffix(b"\n\n") + b"\n"
    return SinkMessage(mail_from, tuple(rcpts), text.replace(b"\n", b"\r\n"), parse(text))


@dataclass
class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:``port``: mail to ``domain`` reaches it."""

    port: int
    process: subprocess.Popen[bytes]
    dump_dir: Path
    lock: int  # holds the port against other test processes until stop()

    @property
    def domain(self) -> str:
        return f"p{self.port}.{SINK_DOMAIN_SUFFIX}"

    def address(self, local: str = "rcpt") -> str:
        return f"{local}@{self.domain}"

    def messages(self) -> list[SinkMessage]:
        """Every transaction received so far, in order of arrival (to the second)."""
        # smtp-sink writes a dump while the message arrives (and deletes it if the client
        # goes away): one it still holds open is not complete yet. List files, then fds.
        paths = sorted(self.dump_dir.rglob("*.*"))
        open_now = set()
        with contextlib.suppress(FileNotFoundError):
            for fd in Path(f"/proc/{self.process.pid}/fd").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    open_now.add(os.readlink(fd))
        done = [p for p in paths if str(p) not in open_now and p.is_file()]
        return [_parse_dump(path.read_bytes()) for path in done]

    def wait_for(
        self, match: Callable[[SinkMessage], bool] = lambda _: True, timeout: float = WAIT
    ) -> SinkMessage:
        """The first message ``match`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.messages() if match(m)), None)
            if found is not None:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"smtp-sink on port {self.port} exited")
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink on {self.port}: nothing after {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        os.close(self.lock)


def start_sink(dump_dir: Path, options: Sequence[str] = ()) -> SmtpSink:
    """An smtp-sink with ``options`` on the first SINK_PORTS port no other test holds."""
    for port in SINK_PORTS:
        lock = _claim(port)
        if lock is None:
            continue
        sink = _start_sink(port, dump_dir, options, lock)
        if sink is not None:
            return sink
        os.close(lock)
    raise AssertionError(f"every sink port {SINK_PORTS.start}-{SINK_PORTS.stop - 1} is busy")


def _claim(port: int) -> int | None:
    """A lock on ``port`` among all test processes on the machine (None: another holds it)."""
    path = Path(tempfile.gettempdir()) / f"mailer-test-sink-{port}.lock"
    lock = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return None
    return lock


def _start_sink(port: int, dump_dir: Path, options: Sequence[str], lock: int) -> SmtpSink | None:
    user = ["-u", "root"] if os.geteuid() == 0 else []  # smtp-sink insists, as root
    dump = ["-d", f"{dump_dir}/%Y%m%d/%H%M%S."]  # one file per message
    dump_dir.mkdir(parents=True, exist_ok=True)
    with open(dump_dir.with_suffix(".log"), "ab") as log:  # a pipe could fill and stall it
        process = subprocess.Popen(
            [SMTP_SINK, *user, *options, *dump, f"{SMTP_HOST}:{port}", "64"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None  # a process outside these locks has the port
        with contextlib.suppress(OSError), socket.create_connection((SMTP_HOST, port), 0.2):
            return SmtpSink(port, process, dump_dir, lock)
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"smtp-sink did not start on {port}: see {dump_dir.with_suffix('.log')}")


# -- Dovecot --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapAccount:
    """The IMAP login of the mailbox: Dovecot on 127.0.0.1, INBOX = MAILDIR."""

    host: str = SMTP_HOST
    port: int = IMAP_PORT
    ssl_port: int = IMAPS_PORT
    user: str = MAILBOX_USER
    password: str = MAILBOX_PASSWORD
    ca_file: Path = CA_FILE

    @contextlib.contextmanager
    def connect(self, tls: str = "implicit") -> Iterator[imaplib.IMAP4]:
        """A logged-in client: ``tls`` is "implicit" (IMAPS), "starttls" or "none"."""
        client: imaplib.IMAP4
        if tls == "implicit":
            client = imaplib.IMAP4_SSL(self.host, self.ssl_port, ssl_context=tls_context())
        else:
            client = imaplib.IMAP4(self.host, self.port)
            if tls == "starttls":
                client.starttls(ssl_context=tls_context())
        try:
            client.login(self.user, self.password)
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
