"""Imports running beside other writers, as real processes: `forget`, a second import, `add`.

Each test starts `mailer subscribers import -` and holds it mid-file (its standard input
open) after its first chunk, lets another process act, then lets it finish. On PostgreSQL
the import has by then written the chunk in its open transaction; on SQLite it has only
staged it (it writes under the lock at the end).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mailer.store.addresses import address_hash
from mailer.store.db import Store, create_db_engine
from mailer.store.models import ForgottenAddress, Subscriber, SubscriberStatus, utcnow
from mailer.store.subscribers import count_by_status, get_subscriber
from tests.store.processes import Mailer, environment, wait_until_blocked, with_application_name

ROWS = [f"big{i}@example.org,Big {i}" for i in range(6000)]
FIRST = "email,name\n" + "\n".join(ROWS[:3000]) + "\n"  # the CLI's chunk is 2000 rows
REST = "\n".join(ROWS[3000:]) + "\n"


def _total(store: Store) -> int:
    return sum(count_by_status(store).values())


@pytest.fixture
def env(config_env: Path, database_url: str, store: Store) -> dict[str, str]:
    """The environment of the `mailer` processes: the test's folder and database."""
    return environment(MAILER_DATABASE_URL=database_url)


def _importer(env: dict[str, str]) -> Mailer:
    """An import from standard input, held after its first chunk."""
    importer = Mailer("subscribers", "import", "-", "--progress", env=env)
    importer.feed(FIRST)
    importer.wait_for("... 2000 rows")
    return importer


@pytest.mark.timeout(180)  # three processes and 6,000 rows, on a shared machine
def test_an_address_forgotten_during_an_import_is_never_added(
    store: Store, env: dict[str, str], database_url: str
) -> None:
    importer = _importer(env)  # big7 is in its first chunk
    forget = Mailer("subscribers", "forget", "big7@example.org", env=env)
    assert forget.finish() == 0, forget.stderr  # the import's rows are not committed yet
    assert "recorded so imports will skip it" in forget.out
    importer.feed(REST, last=True)
    code = importer.finish()

    with store.session() as session:
        assert session.get(ForgottenAddress, address_hash("big7@example.org")) is not None
        assert session.query(Subscriber).filter_by(email_key="big7@example.org").count() == 0
    if database_url.startswith("postgresql"):
        # The import's last check, under a lock forget also takes, sees the erasure: it
        # refuses to commit (in one line), and a second run skips the address.
        assert code == 1
        assert importer.err[-1] == (
            "error: <stdin>: 1 of its addresses was forgotten (erased on request) while the "
            "import ran; nothing was imported: run it again and it will be skipped\n"
        )
        assert "Traceback" not in importer.stderr
        assert _total(store) == 0
        again = Mailer("subscribers", "import", "-", env=env)
        again.feed(FIRST + REST, last=True)
        assert again.finish() == 0, again.stderr
        assert again.out.startswith("added 5999, updated 0, unchanged 0, rejected 1\n")
    else:
        # SQLite merges under its write lock, and decides again when anything was forgotten.
        assert code == 0, importer.stderr
        assert importer.out.startswith("added 5999, updated 0, unchanged 0, rejected 1\n")
        assert "line 9: forgotten (erased on request)\n" in importer.err
    assert _total(store) == 5999


@pytest.mark.timeout(180)
def test_two_imports_of_one_file_both_end_cleanly(
    store: Store, env: dict[str, str], database_url: str, config_env: Path
) -> None:
    path = config_env / "list.csv"
    path.write_text(FIRST + REST, encoding="utf-8")
    first = _importer(env)
    name = f"mailer-second-{secrets.token_hex(4)}"
    postgresql = database_url.startswith("postgresql")
    url = with_application_name(database_url, name) if postgresql else database_url
    second = Mailer("subscribers", "import", str(path), env={**env, "MAILER_DATABASE_URL": url})
    if postgresql:
        wait_until_blocked(database_url, name)  # it waits for the first to commit
    else:
        assert second.finish() == 0, second.stderr  # SQLite: merged under its write lock
    first.feed(REST, last=True)
    assert first.finish() == 0, first.stderr
    assert second.finish() == 0, second.stderr
    # One added everything, the other merged into it (all unchanged).
    assert sorted([first.out, second.out]) == [
        "added 0, updated 0, unchanged 6000, rejected 0\n",
        "added 6000, updated 0, unchanged 0, rejected 0\n",
    ]
    assert "Traceback" not in first.stderr + second.stderr
    assert _total(store) == 6000


@pytest.mark.timeout(180)
def test_an_address_another_writer_adds_during_an_import_is_one_line(
    store: Store, env: dict[str, str], database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time (the staged import decides again)")
    # Another writer (a sign-up, `add`) has inserted big4000 and not yet committed: the
    # import's insert of the same address waits for it, then collides with its commit.
    engine = create_db_engine(database_url)
    name = f"mailer-import-{secrets.token_hex(4)}"
    try:
        with engine.connect() as conn, Session(bind=conn) as session:
            now = utcnow()
            session.add(
                Subscriber(
                    uid=secrets.token_hex(16),
                    email="big4000@example.org",
                    email_key="big4000@example.org",
                    name="Early",
                    status=SubscriberStatus.ACTIVE,
                    attributes={},
                    created_at=now,
                    updated_at=now,
                    status_changed_at=now,
                    status_source="cli",
                    status_reason="added",
                )
            )
            session.flush()
            url = with_application_name(database_url, name)
            importer = Mailer("subscribers", "import", "-", env={**env, "MAILER_DATABASE_URL": url})
            importer.feed(FIRST + REST, last=True)
            wait_until_blocked(database_url, name)
            session.commit()
            code = importer.finish()
    finally:
        engine.dispose()
    assert code == 1
    assert importer.stderr == (
        "error: <stdin>: another process changed the list during the import; nothing was "
        "imported, run it again\n"
    )
    assert _total(store) == 1
    assert get_subscriber(store, "big4000@example.org").name == "Early"
