"""Alembic migrations of the subscriber store (run through :mod:`mailer.store.schema`)."""
