"""Store fixtures: a migrated database on SQLite or PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mailer.store import schema
from mailer.store.csv_import import ImportResult, import_csv
from mailer.store.db import Store, create_db_engine, open_store

ImportText = Callable[..., ImportResult]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """An open store on a database migrated to the latest revision."""
    engine = create_db_engine(database_url)
    schema.upgrade(engine)
    engine.dispose()
    opened = open_store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def import_text(store: Store) -> ImportText:
    """Import CSV given as text into ``store``, as `mailer subscribers import` reads a file."""

    def run(text: str, **kwargs: Any) -> ImportResult:
        return import_csv(store, io.StringIO(text, newline=""), **kwargs)

    return run
