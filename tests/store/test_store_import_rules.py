"""The merge rules and counting of an import on their own (no database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailer.store.csv_reader import Reject, Row
from mailer.store.import_rules import (
    MAX_REPORTED,
    ImportResult,
    NameChange,
    StatusChange,
    count_reject,
    fold_repeats,
    plan_chunk,
)
from mailer.store.models import SubscriberStatus

ACTIVE, UNSUBSCRIBED, BOUNCED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
)


@dataclass
class OnList:
    """A subscriber on the list, as the store's query returns it."""

    id: int
    name: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    status: SubscriberStatus = ACTIVE


def row(key: str, name: str = "", status: SubscriberStatus | None = None, **attrs: str) -> Row:
    return Row(1, key, key, name, dict(attrs), status)


def counts(result: ImportResult) -> tuple[int, ...]:
    return (
        result.added,
        result.updated,
        result.unchanged,
        result.duplicates,
        result.resubscribed,
        result.kept_inactive,
    )


def test_repeats_fold_into_the_first_row() -> None:
    when = datetime(2022, 5, 1, tzinfo=UTC)
    rows = [
        row("a", "Ann", org="A"),
        row("b"),
        row("a", "", lang="en"),
        Row(9, "a", "a", "", {}, UNSUBSCRIBED, status_changed_at=when, status_reason="asked"),
        row("a", "Anna", ACTIVE, org="B"),  # "active" later does not undo the unsubscribe
    ]
    merged, repeats = fold_repeats(rows)
    assert (list(merged), repeats) == (["a", "b"], 3)
    a = merged["a"]
    assert (a.line, a.name, a.attributes) == (1, "Anna", {"org": "B", "lang": "en"})
    assert (a.status, a.status_changed_at, a.status_reason) == (UNSUBSCRIBED, when, "asked")


def test_new_updated_and_unchanged_addresses() -> None:
    merged = {"new": row("new"), "same": row("same", "S"), "renamed": row("renamed", "R2")}
    existing = {"same": OnList(1, "S"), "renamed": OnList(2, "R", {"org": "x"})}
    result = ImportResult()
    plan = plan_chunk(merged, existing, {}, added_from=10, resubscribe=False, result=result)
    assert [r.key for r in plan.new] == ["new"]
    assert plan.names == [NameChange(2, "R2", {"org": "x"})]
    assert plan.statuses == []
    assert plan.first_seen == {"same": False, "renamed": True}
    assert counts(result) == (1, 1, 1, 0, 0, 0)


def test_inactive_addresses_stay_inactive_unless_resubscribe() -> None:
    merged = {"u": row("u"), "b": row("b", status=ACTIVE)}
    existing = {"u": OnList(1, status=UNSUBSCRIBED), "b": OnList(2, status=BOUNCED)}
    result = ImportResult()
    plan = plan_chunk(merged, existing, {}, added_from=None, resubscribe=False, result=result)
    assert (plan.names, plan.statuses) == ([], [])
    assert counts(result) == (0, 0, 2, 0, 0, 2)
    result = ImportResult()
    plan = plan_chunk(merged, existing, {}, added_from=None, resubscribe=True, result=result)
    assert plan.statuses == [
        StatusChange(1, ACTIVE, "--resubscribe"),
        StatusChange(2, ACTIVE, "--resubscribe"),
    ]
    assert counts(result) == (0, 2, 0, 0, 2, 0)


def test_a_file_can_set_a_non_active_status() -> None:
    unsubscribe = Row(1, "a", "a", "", {}, UNSUBSCRIBED, status_reason="at the event")
    result = ImportResult()
    plan = plan_chunk(
        {"a": unsubscribe},
        {"a": OnList(7)},
        {},
        added_from=None,
        resubscribe=False,
        result=result,
    )
    assert plan.statuses == [StatusChange(7, UNSUBSCRIBED, "at the event")]
    assert plan.first_seen == {"a": True}
    assert counts(result) == (0, 1, 0, 0, 0, 0)


def test_an_address_met_in_an_earlier_chunk_counts_once() -> None:
    existing = {"a": OnList(1, "A"), "b": OnList(2, "B"), "c": OnList(3, status=BOUNCED)}
    merged = {"a": row("a", "A2"), "b": row("b", "B2"), "c": row("c")}
    # Earlier chunks met a (unchanged), b (updated) and c (kept inactive, counted then).
    result = ImportResult(unchanged=2, updated=1, kept_inactive=1)
    seen = {"a": False, "b": True, "c": False}
    plan = plan_chunk(merged, existing, seen, added_from=10, resubscribe=False, result=result)
    assert plan.now_updated == ["a"]  # now it counts as updated
    assert plan.first_seen == {}
    assert (result.updated, result.unchanged, result.duplicates, result.kept_inactive) == (
        2,
        1,
        3,
        1,
    )


def test_an_address_this_import_added_is_a_duplicate() -> None:
    result = ImportResult(added=1)
    plan = plan_chunk(
        {"a": row("a", "Again")},
        {"a": OnList(10, "First")},
        {},
        added_from=10,
        resubscribe=False,
        result=result,
    )
    assert plan.names == [NameChange(10, "Again", {})]  # the later row still wins
    assert plan.first_seen == {}
    assert counts(result) == (1, 0, 0, 1, 0, 0)


def test_all_rejects_count_the_first_few_are_kept() -> None:
    result = ImportResult()
    for line in range(MAX_REPORTED + 5):
        count_reject(result, Reject(line, "bad"))
    assert result.rejected == MAX_REPORTED + 5
    assert [r.line for r in result.rejects] == list(range(MAX_REPORTED))
