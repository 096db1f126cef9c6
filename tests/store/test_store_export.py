"""CSV export: streamed, every column, and it round-trips through import."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from mailer.store import schema
from mailer.store.csv_cells import CONSENT_COLUMNS
from mailer.store.csv_export import COLUMNS, export_csv
from mailer.store.csv_import import ImportResult, import_csv
from mailer.store.db import Store, create_db_engine, open_store
from mailer.store.models import SubscriberStatus
from mailer.store.subscribers import (
    add_subscriber,
    forget,
    get_subscriber,
    set_status,
)

ImportText = Callable[..., ImportResult]  # the import_text fixture (tests/store/conftest.py)


def _export(store: Store) -> str:
    out = io.StringIO(newline="")
    export_csv(store, out)
    return out.getvalue()


def _fill(store: Store) -> None:
    add_subscriber(store, "Jane@Example.org", name="Doe, Jane", attributes={"org": "ISEI"})
    add_subscriber(store, "zoe@example.org", name="Zoë", attributes={"notes": 'two\nlines, "q"'})
    add_subscriber(store, "plain@example.org")
    set_status(store, "zoe@example.org", SubscriberStatus.UNSUBSCRIBED, reason="one-click")
    add_subscriber(store, "b@example.org")
    set_status(store, "b@example.org", SubscriberStatus.BOUNCED, source="send", reason="550")


def _fresh(database_url: str) -> Store:
    # A second, empty database next to the first (same backend): drop and recreate.
    engine = create_db_engine(database_url)
    schema.downgrade(engine, "base")
    schema.upgrade(engine)
    engine.dispose()
    return open_store(database_url)


def test_export_has_every_column(store: Store) -> None:
    _fill(store)
    text = _export(store)
    # Every row has every column, also a subscriber without attributes.
    assert {len(r) for r in csv.reader(io.StringIO(text, newline=""))} == {
        len(COLUMNS) + len(CONSENT_COLUMNS) + 2
    }
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == [*COLUMNS, *CONSENT_COLUMNS, "notes", "org"]
    assert all(jane[c] == "" for c in CONSENT_COLUMNS for jane in rows)  # none signed up
    jane = rows[0]
    assert (jane["email"], jane["name"], jane["status"], jane["org"], jane["notes"]) == (
        "Jane@example.org",
        "Doe, Jane",
        "active",
        "ISEI",
        "",
    )
    assert jane["created_at"].endswith("+00:00")
    assert len(jane["uid"]) == 32
    assert [r["status"] for r in rows] == ["active", "unsubscribed", "active", "bounced"]
    assert rows[3]["status_source"] == "send" and rows[3]["status_reason"] == "550"


def test_round_trip_through_import(store: Store, database_url: str) -> None:
    _fill(store)
    exported = _export(store)
    before = get_subscriber(store, "zoe@example.org")
    store.close()
    fresh = _fresh(database_url)
    result = import_csv(fresh, io.StringIO(exported, newline=""))
    assert (result.added, result.rejected) == (4, 0)
    after = get_subscriber(fresh, "zoe@example.org")
    for field in (
        "uid",
        "email",
        "name",
        "status",
        "attributes",
        "created_at",
        "status_changed_at",
        "status_source",
        "status_reason",
    ):
        assert getattr(after, field) == getattr(before, field), field
    # Same file again, every column identical except updated_at (the time of the import).
    again = _export(fresh)

    def without_updated(text: str) -> list[list[str]]:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        i = rows[0].index("updated_at")
        return [r[:i] + r[i + 1 :] for r in rows]

    assert without_updated(again) == without_updated(exported)
    # Importing the export over the same list changes nothing.
    result = import_csv(fresh, io.StringIO(again, newline=""))
    assert (result.added, result.updated, result.unchanged) == (0, 0, 4)
    fresh.close()


def test_forgotten_address_is_not_exported(store: Store, import_text: ImportText) -> None:
    import_text("email\na@example.org\nb@example.org\n")
    forget(store, "a@example.org")
    text = _export(store)
    assert "a@example.org" not in text and "b@example.org" in text


def test_empty_list_exports_a_header(store: Store) -> None:
    assert _export(store).splitlines() == [",".join([*COLUMNS, *CONSENT_COLUMNS])]
