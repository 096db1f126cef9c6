"""`mailer serve`: the unsubscribe links, the archive and the sign-up form (mailer.web runs it
on uvicorn), with the sign-up outbox sent from a thread beside it."""

from __future__ import annotations

import typer

from mailer.cli.app import app, get_config


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free one)."),
    outbox: bool = typer.Option(
        True, "--outbox/--no-outbox", help="Send the sign-ups' confirmation emails too."
    ),
) -> None:
    """Serve the unsubscribe links, the web archive and the sign-up form (put a TLS reverse
    proxy in front).

    For several worker processes use any ASGI server with the factory, e.g.
    `uvicorn --factory mailer.web:create_app --workers 4` (see the README).
    """
    from mailer import web
    from mailer.send.outbox import OutboxDrainer
    from mailer.store.db import open_store
    from mailer.store.signup_outbox import SqlOutbox

    config = get_config(ctx)
    web_app = web.create_app(config)  # checks the secret key
    # Fail here with one clear line, not in uvicorn's start-up with a traceback.
    store = open_store(config.database_url)
    sock = web.listen(host, port)
    where = web.authority(host, sock.getsockname()[1])  # port 0 became a real one
    typer.echo(f"serving {config.name} on http://{where} (public URL {config.base_url})")
    drainer = OutboxDrainer(config, SqlOutbox(store)) if outbox else None
    if drainer is not None:
        web_app.state.web.wake_outbox = drainer.wake
        drainer.start()
    try:
        web.serve(web_app, sock)
    finally:
        if drainer is not None:
            drainer.stop()
        store.close()
