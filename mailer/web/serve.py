"""Run the app in this process on uvicorn: what `mailer serve` does.

The socket is bound here, before uvicorn starts, so that a taken port is one clear line (not
uvicorn's log of a start-up and shutdown) and port 0 can be told as the port it became.
uvicorn's own binding logs and exits the process instead, so it cannot give either.
"""

from __future__ import annotations

import os
import socket

from starlette.applications import Starlette

from mailer.errors import ServeError

BACKLOG = 2048  # uvicorn's default: a burst of one-click POSTs waits here, not refused


def authority(host: str, port: int) -> str:
    """``host:port`` as in a URL (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free one); ServeError if it cannot."""

    def refused(reason: str) -> ServeError:
        return ServeError(f"cannot listen on {authority(host, port)}: {reason}")

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise refused(_lower_first(exc.strerror or "no such address")) from None
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a restart need not wait for the old connections' TIME_WAIT; a port
        # another socket listens on is still refused (EADDRINUSE).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise refused(_lower_first(reason)) from None
    return sock


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on the listening ``sock`` until interrupted (then close it)."""
    import uvicorn  # only a serving process needs it

    # No access log: its lines would hold the tokens (the proxy's log is the place for one).
    server = uvicorn.Server(uvicorn.Config(app, server_header=False, access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down gracefully, as it does alone
        return
    except SystemExit:  # uvicorn's exit when the app's start-up failed (it logged why)
        raise ServeError("the web app did not start (see the log above)") from None
    finally:
        sock.close()
    if not server.started:
        raise ServeError("the web app did not start (see the log above)")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
