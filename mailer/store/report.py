"""`mailer report`: an issue's delivery counts and its problem rows, and their CSV form."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from sqlalchemy import select

from mailer.errors import NotFound
from mailer.send.ports import DeliveryStatus, IssueRecord
from mailer.store.csv_cells import neutralise
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues
from mailer.store.models import Delivery, Subscriber, SubscriberStatus
from mailer.store.rates import IssueRates, issue_rates


@dataclass(frozen=True)
class ReportRow:
    email: str
    name: str
    delivery_status: str
    subscriber_status: str
    attempts: int
    last_reply: str
    updated_at: datetime | None
    bounce: str = ""  # what came back later: hard, soft, policy, complaint (mailer bounces)
    bounce_status: str = ""
    bounce_reason: str = ""


@dataclass(frozen=True)
class Report:
    record: IssueRecord
    counts: dict[DeliveryStatus, int]  # every status present, 0 when none
    problems: list[ReportRow]
    rates: IssueRates


def issue_report(store: Store, slug: str) -> Report:
    """The report of issue ``slug``; NotFound if its send never started."""
    issues = SqlIssues(store)
    record = issues.find(slug)
    if record is None:
        raise NotFound(f"issue {slug} has not been sent yet (no ledger)")
    # The ledger's own counts, so the report and a send's summary can never disagree.
    counts = issues.ledger(record.id).counts()
    return Report(record, counts, problem_rows(store, record.id), issue_rates(store, record.id))


def problem_rows(store: Store, issue_id: int) -> list[ReportRow]:
    """Failed and deferred deliveries, those a report came back for, and recipients whose
    subscription bounced."""
    with store.session() as session:
        rows = session.execute(
            select(
                Subscriber.email,
                Subscriber.name,
                Delivery.status,
                Subscriber.status,
                Delivery.attempts,
                Delivery.last_reply,
                Delivery.updated_at,
                Delivery.bounce,
                Delivery.bounce_status,
                Delivery.bounce_reason,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                Delivery.issue_id == issue_id,
                (Delivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.DEFERRED]))
                | (Subscriber.status == SubscriberStatus.BOUNCED)
                | (Delivery.bounce != ""),
            )
            .order_by(Delivery.status, Subscriber.email_key)
        ).all()
    return [
        ReportRow(
            email=r[0],
            name=r[1] or "",
            delivery_status=str(DeliveryStatus(r[2]).value),
            subscriber_status=str(SubscriberStatus(r[3]).value),
            attempts=r[4],
            last_reply=r[5] or "",
            updated_at=r[6],
            bounce=r[7] or "",
            bounce_status=r[8] or "",
            bounce_reason=r[9] or "",
        )
        for r in rows
    ]


REPORT_COLUMNS = (
    "email",
    "name",
    "delivery_status",
    "subscriber_status",
    "attempts",
    "last_reply",
    "updated_at",
    "bounce",
    "bounce_status",
    "bounce_reason",
)


def write_report_csv(rows: Sequence[ReportRow], out: IO[str]) -> None:
    """``mailer report --csv``: one line per problem row (``out`` opened with newline="").
    Names, addresses and server replies are neutralised as in ``export``: a spreadsheet
    shows a cell starting with ``=`` as text, never runs it (:mod:`mailer.store.csv_cells`)."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        values = {
            **vars(row),
            "email": neutralise(row.email),
            "name": neutralise(row.name),
            "last_reply": neutralise(row.last_reply),
            "updated_at": row.updated_at.isoformat() if row.updated_at else "",
        }
        writer.writerow([values[column] for column in REPORT_COLUMNS])
