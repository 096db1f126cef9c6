"""Run the app in this process on uvicorn: what `mailer serve` does."""

from __future__ import annotations

from starlette.applications import Starlette


def serve(app: Starlette, *, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until interrupted."""
    import uvicorn  # only a serving process needs it

    # No access log: its lines would hold the tokens (the proxy's log is the place for one).
    uvicorn.run(app, host=host, port=port, server_header=False, access_log=False)
