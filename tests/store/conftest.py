"""Store fixtures: a migrated database on SQLite or PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

from mailer.store.csv_import import ImportResult, import_csv
from mailer.store.db import Store

ImportText = Callable[..., ImportResult]


@pytest.fixture
def import_text(store: Store) -> ImportText:
    """Import CSV given as text into ``store``, as `mailer subscribers import` reads a file."""

    def run(text: str, **kwargs: Any) -> ImportResult:
        return import_csv(store, io.StringIO(text, newline=""), **kwargs)

    return run
