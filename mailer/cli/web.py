"""`mailer serve`: the unsubscribe links and the archive (mailer.web runs it on uvicorn)."""

from __future__ import annotations

import typer

from mailer.cli.app import app, get_config


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free one)."),
) -> None:
    """Serve the unsubscribe links and the web archive (put a TLS reverse proxy in front).

    For several worker processes use any ASGI server with the factory, e.g.
    `uvicorn --factory mailer.web:create_app --workers 4` (see the README).
    """
    from mailer import web
    from mailer.store.db import open_store

    config = get_config(ctx)
    web_app = web.create_app(config)  # checks the secret key
    # Fail here with one clear line, not in uvicorn's start-up with a traceback.
    open_store(config.database_url).close()
    sock = web.listen(host, port)
    where = web.authority(host, sock.getsockname()[1])  # port 0 became a real one
    typer.echo(f"serving {config.name} on http://{where} (public URL {config.base_url})")
    web.serve(web_app, sock)
