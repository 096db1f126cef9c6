"""The subscriber store: the only package that imports SQLAlchemy or Alembic.

The package's surface is its modules: ``__all__`` names the ones other packages may import
(tests/test_exported_members.py checks it); the others are its internals. This file imports
nothing, so importing a module of the package costs only that module.
"""

__all__ = [
    "addresses",
    "archive",
    "bounces",
    "checkpoint",
    "claims",
    "composed",
    "consent",
    "csv_export",
    "csv_import",
    "db",
    "ledger",
    "media",
    "models",
    "preferences",
    "rate_slots",
    "report",
    "schedules",
    "schema",
    "send_lock",
    "send_status",
    "signup_links",
    "signup_outbox",
    "signups",
    "subscribers",
    "unsubscribe",
]
