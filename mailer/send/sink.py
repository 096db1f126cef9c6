"""`mailer sink`: a development SMTP server that accepts everything into a Maildir."""

from __future__ import annotations

import asyncio
import mailbox
import threading
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from mailer.errors import SendError


class _Handler(Mailbox):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply: str = await super().handle_DATA(server, session, envelope)
        with self._lock:
            self.count += len(envelope.rcpt_tos)
        return reply


class _Controller(Controller):
    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]  # port 0: learn the real one
        super()._trigger_server()  # type: ignore[no-untyped-call]


class Sink:
    def __init__(self, controller: _Controller, handler: _Handler) -> None:
        self._controller = controller
        self._handler = handler

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def count(self) -> int:
        return self._handler.count

    def stop(self) -> None:
        self._controller.stop()


def start_sink(host: str, port: int, maildir: Path) -> Sink:
    """Listen on ``host:port`` (0 = any free port) and store every message in ``maildir``."""
    try:
        mailbox.Maildir(maildir, create=True)
    except OSError as exc:
        raise SendError(f"cannot create maildir {maildir}: {exc.strerror}") from None
    handler = _Handler(maildir)
    controller = _Controller(handler, hostname=host, port=port, data_size_limit=50_000_000)
    try:
        controller.start()
    except OSError as exc:
        raise SendError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return Sink(controller, handler)
