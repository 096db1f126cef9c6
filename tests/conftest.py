"""Shared fixtures: a real database (SQLite, or PostgreSQL via MAILER_TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.store import schema
from mailer.store.db import Store, create_db_engine, open_store

# The real mail servers' fixtures (Postfix, Dovecot, smtp-sink, SpamAssassin, DKIM tools).
pytest_plugins = ["tests.mta"]

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = REPO / "issues" / "025-may-2022"
ARTIFACTS = REPO / "test-artifacts"
# Debian's chromium, driven by Playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch the database are marked `db`: the PostgreSQL run selects them.
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture
def rng() -> random.Random:
    """A random generator for a test that draws: its seed is printed (pytest shows it with a
    failure) and ``MAILER_TEST_SEED=N`` replays it."""
    given = os.environ.get("MAILER_TEST_SEED", "")
    if given and not given.isdigit():
        raise pytest.UsageError(f"MAILER_TEST_SEED must be a whole number, not {given!r}")
    seed = int(given) if given else secrets.randbits(32)
    print(f"random seed: MAILER_TEST_SEED={seed}")
    return random.Random(seed)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database for one test.

    SQLite: a fresh file. PostgreSQL (MAILER_TEST_DATABASE_URL set): a fresh schema on that
    server, put first on the search_path, dropped afterwards.
    """
    base = os.environ.get("MAILER_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'subscribers.db'}"
        return
    import sqlalchemy as sa

    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


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
def config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a valid mailer.toml and secret, as `mailer init` leaves it."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("MAILER_") and not key.startswith("MAILER_TEST_"):
            monkeypatch.delenv(key)
    (tmp_path / "mailer.toml").write_text((REPO / "mailer.toml").read_text(encoding="utf-8"))
    (tmp_path / ".mailer-secret").write_text(secrets.token_urlsafe(32) + "\n")
    return tmp_path
