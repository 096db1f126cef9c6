"""Alembic environment: migrate the connection mailer hands over, or mailer's configured DB.

:mod:`mailer.store.schema` runs Alembic programmatically and passes its open connection in
``config.attributes["connection"]``. Run as plain ``alembic`` (e.g. to autogenerate a new
revision), the URL comes from mailer's own config (``mailer.toml`` / ``MAILER_DATABASE_URL``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mailer.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from mailer.config import load_config
    from mailer.store.db import create_db_engine

    engine = create_db_engine(load_config().database_url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("mailer migrations run online only (mailer db upgrade)")
run()
