"""Migrations and schema checks, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from mailer.errors import DatabaseUnavailable, SchemaMismatch
from mailer.store import schema
from mailer.store.db import create_db_engine, open_store
from mailer.store.models import Base


def _diff(url: str) -> list[object]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_of_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    assert schema.upgrade(engine) == (None, schema.head())
    assert schema.current(engine) == schema.head()
    schema.check_current(engine)
    assert schema.upgrade(engine) == (schema.head(), schema.head())  # idempotent
    engine.dispose()
    assert _diff(database_url) == []


def test_head_constant_matches_the_migrations() -> None:
    # schema.HEAD spares every command loading Alembic: bump it with each new revision.
    assert schema.HEAD == schema.head() == schema.revisions()[-1]


def test_walk_every_revision_down_to_base_and_back_up(database_url: str) -> None:
    engine = create_db_engine(database_url)
    revisions = schema.revisions()
    assert revisions[0] == "0001" and revisions[-1] == schema.head()
    schema.upgrade(engine)
    for previous in [*reversed(revisions[:-1]), "base"]:
        schema.downgrade(engine, previous)
        assert schema.current(engine) == (None if previous == "base" else previous)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    for revision in revisions:
        schema.upgrade(engine, revision)
        assert schema.current(engine) == revision
    engine.dispose()
    assert _diff(database_url) == []


def test_empty_database_is_refused_with_a_hint(database_url: str) -> None:
    with pytest.raises(SchemaMismatch, match="no mailer schema yet: run `mailer init`"):
        open_store(database_url)


def test_newer_database_is_refused(database_url: str) -> None:
    engine = create_db_engine(database_url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="revision 9999, newer than this version of mailer"):
        open_store(database_url)
    with pytest.raises(SchemaMismatch, match="newer"):
        schema.upgrade(engine)
    engine.dispose()


def test_older_database_asks_for_upgrade(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_db_engine(database_url)
    revisions = schema.revisions()
    if len(revisions) > 1:
        schema.upgrade(engine, revisions[-2])
        older = revisions[-2]
    else:  # one revision so far: pretend the code has a newer one
        schema.upgrade(engine)
        older = revisions[0]
        monkeypatch.setattr(schema, "HEAD", "9999")
        monkeypatch.setattr(schema, "head", lambda: "9999")
        monkeypatch.setattr(schema, "revisions", lambda: [*revisions, "9999"])
    engine.dispose()
    with pytest.raises(
        SchemaMismatch, match=rf"at schema revision {older}; .* run `mailer db upgrade`"
    ):
        open_store(database_url)


def test_foreign_tables_without_version_are_not_taken_over(database_url: str) -> None:
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE subscribers (id INTEGER PRIMARY KEY)"))
    with pytest.raises(SchemaMismatch, match="not created by mailer"):
        schema.upgrade(engine)
    engine.dispose()


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.db"
    path.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(DatabaseUnavailable, match="file is not a database"):
        open_store(f"sqlite:///{path}")


def test_sqlite_in_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot open database"):
        open_store(f"sqlite:///{tmp_path}/missing/subscribers.db")


def test_postgresql_down_is_one_message_without_password() -> None:
    url = "postgresql+psycopg://mailer:s3cret-pw@127.0.0.1:1/newsletter"
    with pytest.raises(DatabaseUnavailable) as info:
        open_store(url)
    assert "cannot open database postgresql+psycopg://mailer:***@127.0.0.1:1" in str(info.value)
    assert "s3cret-pw" not in str(info.value)


def test_sqlite_gets_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db", check_schema=False)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()
