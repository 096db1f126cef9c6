"""Creating and checking the schema.

PLACEHOLDER until the Alembic migrations land: ``upgrade`` creates the tables from the
models and ``check_current`` accepts any database. The store work replaces both with Alembic
(``upgrade`` to head; ``check_current`` raising SchemaMismatch for an older or newer schema).
"""

from __future__ import annotations

from sqlalchemy import Engine

from mailer.store.models import Base


def upgrade(engine: Engine) -> None:
    """Bring the database to the latest schema."""
    Base.metadata.create_all(engine)


def check_current(engine: Engine) -> None:
    """Raise SchemaMismatch unless the database is at the latest schema."""
