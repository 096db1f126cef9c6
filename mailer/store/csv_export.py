"""Exporting subscribers as CSV, streamed, in the format ``import`` reads back.

Columns: uid, email, name, status, created_at, updated_at, status_changed_at,
status_source, status_reason, mailer_export, the latest proof of consent of a subscriber who
signed up on the form (consent_signed_up_at, consent_confirmed_at, consent_form, consent_ip,
consent_text_sha256, consent_text: empty for one added otherwise), then one column per
attribute name (sorted). Timestamps are ISO 8601 UTC. A cell a spreadsheet would run as a
formula gets a leading ``'`` (:mod:`mailer.store.csv_cells`), which import takes off again in
rows whose ``mailer_export`` cell says so. Importing the file into an empty database restores
every subscriber with the same uid (so links in issues already sent keep working), status,
timestamps and text; the consent columns are for the record (import skips them).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from functools import lru_cache
from typing import IO, Any, cast

from sqlalchemy import Connection, Table, func, select, text

from mailer.store.csv_cells import CONSENT_COLUMNS, ESCAPED, FIRST, MARKER, neutralise
from mailer.store.db import Store
from mailer.store.models import Consent, ConsentText, Subscriber
from mailer.store.subscribers import FIELD_COLUMNS

COLUMNS = (*FIELD_COLUMNS, MARKER)  # export writes exactly what import reads back
BATCH = 5000
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_CONSENTS = cast(Table, Consent.__table__)
_TEXTS = cast(Table, ConsentText.__table__)
_LATEST = (
    select(_CONSENTS)
    .where(_CONSENTS.c.id.in_(select(func.max(_CONSENTS.c.id)).group_by(_CONSENTS.c.subscriber_id)))
    .subquery()
)
_CONSENT_VALUES = (
    _LATEST.c.signed_up_at,
    _LATEST.c.confirmed_at,
    _LATEST.c.form,
    _LATEST.c.ip,
    _LATEST.c.consent_sha256,
    _TEXTS.c.text,
)


def export_csv(store: Store, out: IO[str]) -> int:
    """Write every subscriber to ``out`` (opened with ``newline=""``); return the count."""
    with store.engine.connect() as conn:
        # One snapshot for both passes (a repeatable read on PostgreSQL; SQLite reads in one
        # transaction see one snapshot too).
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        keys = _attribute_names(conn)
        writer = csv.writer(out)
        writer.writerow([*COLUMNS, *CONSENT_COLUMNS, *keys])
        query = (
            select(
                *(_SUBSCRIBERS.c[c] for c in FIELD_COLUMNS),
                *_CONSENT_VALUES,
                _SUBSCRIBERS.c.attributes,
            )
            .outerjoin_from(_SUBSCRIBERS, _LATEST, _LATEST.c.subscriber_id == _SUBSCRIBERS.c.id)
            .outerjoin(_TEXTS, _TEXTS.c.sha256 == _LATEST.c.consent_sha256)
        )
        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
            query.order_by(_SUBSCRIBERS.c.id)
        )
        count = 0
        when, safe, first = _isoformat, neutralise, FIRST
        blank = [""] * len(keys)
        no_consent = [""] * len(CONSENT_COLUMNS)
        for partition in result.partitions():
            rows = []
            for row in partition:
                uid, email, name, status, created, updated, changed, source, why = row[:9]
                signed, confirmed, form, ip, digest, wording, a = row[9:]
                # Text may start like a formula (uid, status and timestamps cannot); the
                # test is inline because export's time goes into this loop.
                if (
                    email[:1] in first
                    or name[:1] in first
                    or source[:1] in first
                    or why[:1] in first
                ):
                    email, name, source, why = safe(email), safe(name), safe(source), safe(why)
                values = [uid, email, name, status.value, when(created), when(updated)]
                values += [when(changed), source, why, ESCAPED]
                if confirmed is None:
                    values += no_consent
                else:  # the form's origin came from a request header: neutralised too
                    values += [when(signed), when(confirmed), safe(form), ip, digest, safe(wording)]
                values += [_cell(a.get(k)) for k in keys] if a else blank
                rows.append(values)
            writer.writerows(rows)
            count += len(rows)
        conn.rollback()
    return count


def _attribute_names(conn: Connection) -> list[str]:
    """Every attribute name in use, sorted: one set-based query, no rows in memory."""
    if conn.dialect.name == "sqlite":
        query = text("SELECT DISTINCT j.key FROM subscribers, json_each(subscribers.attributes) j")
    elif conn.dialect.name == "postgresql":
        query = text("SELECT DISTINCT json_object_keys(attributes) FROM subscribers")
    else:  # pragma: no cover - other backends: scan
        names: set[str] = set()
        for (attributes,) in conn.execute(select(_SUBSCRIBERS.c.attributes)):
            names.update(attributes or {})
        return sorted(names)
    return sorted(str(k) for k in conn.scalars(query))


@lru_cache(maxsize=4096)
def _isoformat(moment: datetime) -> str:
    # Cached: imported subscribers share their timestamps, and formatting dominates export.
    return moment.isoformat()


def _cell(value: Any) -> str:
    """An attribute's value as a cell, neutralised like every text cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value) if value[:1] in FIRST else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool | int | float | list | dict):
        return neutralise(json.dumps(value, ensure_ascii=False))  # -1 would be a formula
    return neutralise(str(value))
