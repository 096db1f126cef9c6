"""A real SMTP server for tests: aiosmtpd in a thread, on an ephemeral port, with faults.

It records every message it accepted (recipient and bytes) and can be told to:
``defer``     answer 451 to RCPT for these recipients (a count of times, -1 = always),
``reject``    answer 550 5.1.1 (no such user) to RCPT for these recipients,
``close_every`` answer 421 to DATA and close the session after that many messages,
``drop_at``   drop the connection without a reply after receiving these DATA (overall count),
``delay``     wait this long before answering DATA,
``reject_senders`` answer 553 to MAIL FROM these senders,
``reject_message`` answer this to every message's final dot,
``on_rcpt``   call this with each recipient before answering its RCPT.
It announces PIPELINING unless ``pipelining=False``, SMTPUTF8 with ``smtputf8=True``. With
``certs`` it offers STARTTLS (and requires it), with ``users`` AUTH PLAIN/LOGIN (over TLS
only), with ``implicit_tls`` it speaks TLS from the first byte (smtps).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Certs:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certs(folder: Path) -> Certs:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailer test server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    certs = Certs(folder / "cert.pem", folder / "key.pem")
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs


@dataclass
class Faults:
    defer: dict[str, int] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)
    close_every: int = 0
    drop_at: set[int] = field(default_factory=set)
    delay: float = 0.0
    reject_senders: set[str] = field(default_factory=set)
    reject_message: str = ""  # answer this (a 5xx) to every message's final dot
    on_rcpt: Callable[[str], None] | None = None  # e.g. unsubscribe them right then


class RecordingHandler:
    def __init__(self, faults: Faults, users: dict[str, str] | None, pipelining: bool) -> None:
        self.faults = faults
        self.pipelining = pipelining
        self.users = users or {}
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, bytes]] = []
        self.rcpt_replies: list[tuple[str, str]] = []
        self.data_count = 0
        self.sessions = 0
        self._per_session: dict[int, int] = {}
        self.logins: list[tuple[str, str]] = []
        self.senders: list[str] = []  # every MAIL FROM
        self.mail_options: list[list[str]] = []  # the parameters of every MAIL FROM

    @property
    def recipients(self) -> list[str]:
        with self.lock:
            return [rcpt for rcpt, _ in self.accepted]

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        if self.pipelining:  # aiosmtpd reads command by command, so pipelined input works
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if address in self.faults.reject_senders:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        with self.lock:
            self.senders.append(address)
            self.mail_options.append(list(mail_options))
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        faults = self.faults
        if faults.on_rcpt is not None:
            faults.on_rcpt(address)
        if address in faults.reject:
            reply = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        elif faults.defer.get(address, 0) != 0:
            faults.defer[address] -= 1
            reply = "451 4.3.0 Temporary failure, try again later"
        else:
            envelope.rcpt_tos.append(address)
            reply = "250 2.1.5 OK"
        with self.lock:
            self.rcpt_replies.append((address, reply))
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        faults = self.faults
        with self.lock:
            self.data_count += 1
            count = self.data_count
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if count in faults.drop_at:
            server.transport.abort()  # gone before the final reply: not accepted
            return "451 never seen"
        if faults.reject_message:
            return faults.reject_message
        key = id(session)
        n = self._per_session.get(key, 0) + 1
        self._per_session[key] = n
        if faults.close_every and n > faults.close_every:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 Too many messages on this connection, closing"
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.accepted.append((rcpt, envelope.original_content))
        return "250 2.0.0 Ok: queued"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        password = auth_data.password.decode()
        with self.lock:
            self.logins.append((login, mechanism))
        ok = self.users.get(login) == password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


class _EphemeralController(Controller):  # type: ignore[misc]
    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before aiosmtpd connects to itself.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is what smtp_url needs."""

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        certs: Certs | None = None,
        implicit_tls: bool = False,
        users: dict[str, str] | None = None,
        pipelining: bool = True,
        smtputf8: bool = False,
    ) -> None:
        self.faults = faults or Faults()
        self.handler = RecordingHandler(self.faults, users, pipelining)
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if certs is not None and not implicit_tls:
            kwargs.update(tls_context=certs.server_context(), require_starttls=True)
        if users is not None:
            kwargs.update(
                authenticator=self.handler.authenticate,
                auth_require_tls=True,
            )
        self.scheme = "smtps" if implicit_tls else "smtp"
        self.controller = _EphemeralController(
            self.handler,
            hostname="127.0.0.1",
            port=0,
            ssl_context=certs.server_context() if implicit_tls and certs else None,
            server_hostname="localhost",
            **kwargs,
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def url(self, user: str = "") -> str:
        prefix = f"{user}@" if user else ""
        return f"{self.scheme}://{prefix}127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def accepted(self) -> list[tuple[str, bytes]]:
        with self.handler.lock:
            return list(self.handler.accepted)

    @property
    def recipients(self) -> list[str]:
        return self.handler.recipients
