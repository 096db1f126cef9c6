"""`mailer init`: a starter mailer.toml, the token secret and the database."""

from __future__ import annotations

import typer

from mailer.cli.app import app, config_file, get_config
from mailer.cli.db import describe_upgrade
from mailer.compose.layout import install_default_layouts
from mailer.config import config_path, ensure_secret_key, write_starter
from mailer.store.db import open_store
from mailer.store.schema import upgrade


@app.command()
def init(ctx: typer.Context) -> None:
    """Create mailer.toml, the token secret, a layout and the subscriber database.

    Never overwrites an existing file; on an existing database it migrates the schema to the
    latest version.
    """
    path = config_path(config_file(ctx))
    if write_starter(path):
        typer.echo(f"wrote {path}: edit the newsletter's name, address and URL")
    else:
        typer.echo(f"kept existing {path}")
    config = get_config(ctx)
    if ensure_secret_key(config.secret_key_file):
        typer.echo(f"wrote {config.secret_key_file} (token secret; keep it, do not commit it)")
    for layout in install_default_layouts(config.layouts_dir):
        typer.echo(f"wrote {layout} (the email's layout; customise it freely)")
    config.issues_dir.mkdir(parents=True, exist_ok=True)
    with open_store(config.database_url, check_schema=False).guard() as store:
        typer.echo(describe_upgrade(store.url, *upgrade(store.engine)))
