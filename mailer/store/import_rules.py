"""What an import does with each row, and how it counts: pure decisions, no database.

Given the rows of a chunk (validated by :mod:`mailer.store.csv_reader`) and the state of
the subscribers already on the list with those addresses, :func:`plan_chunk` says which
rows to add, which names and attributes to update, which statuses to change, and counts
each address once in an :class:`ImportResult`. The strategies that read the list and write
the outcome live in :mod:`mailer.store.import_chunked` and :mod:`mailer.store.import_staged`.

Rules (README "Subscribers"):

* a row whose address is on the list, or repeated in the file (in any case), is merged: a
  non-empty name replaces the old one, attributes are added or replaced;
* an unsubscribed or bounced address is never made active again unless ``resubscribe``, a
  complained one never (only `subscribers resubscribe` does, for one address); a file may
  set a non-active status, and an unsubscribe anywhere in the file wins over "active";
* an address counts once: added, updated or unchanged; its repeats count as duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from mailer.store.csv_reader import Reject, Row
from mailer.store.models import SubscriberStatus

__all__ = [
    "MAX_REPORTED",
    "ChunkPlan",
    "ImportResult",
    "Listed",
    "Merge",
    "NameChange",
    "StatusChange",
    "count_reject",
    "fold_repeats",
    "merge_existing",
    "merge_into",
    "plan_chunk",
]

MAX_REPORTED = 20  # rejects kept in the result for display; all go to the rejects file


@dataclass
class ImportResult:
    """What an import did, per address (``duplicates`` are rows merged into earlier ones)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    resubscribed: int = 0  # inactive addresses made active (only with resubscribe)
    kept_inactive: int = 0  # inactive addresses the file lists but that stay inactive
    rejects: list[Reject] = field(default_factory=list)  # the first MAX_REPORTED


def count_reject(result: ImportResult, reject: Reject) -> None:
    result.rejected += 1
    if len(result.rejects) < MAX_REPORTED:
        result.rejects.append(reject)


def merge_into(first: Row, later: Row) -> None:
    """Fold a repeated row into the first one: later names and attributes win."""
    if later.name:
        first.name = later.name
    first.attributes.update(later.attributes)
    # An unsubscribe anywhere in the file wins over "active".
    if later.status is not None and later.status != SubscriberStatus.ACTIVE:
        first.status = later.status
        first.status_changed_at = later.status_changed_at or first.status_changed_at
        first.status_source = later.status_source or first.status_source
        first.status_reason = later.status_reason or first.status_reason


def fold_repeats(rows: list[Row]) -> tuple[dict[str, Row], int]:
    """The rows by address key, in file order, repeats folded into the first; and how
    many rows were repeats."""
    merged: dict[str, Row] = {}
    repeats = 0
    for row in rows:
        first = merged.get(row.key)
        if first is None:
            merged[row.key] = row
        else:
            repeats += 1
            merge_into(first, row)
    return merged, repeats


class Listed(Protocol):
    """A subscriber on the list, as far as the merge rules look at it."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def status(self) -> SubscriberStatus: ...


class NameChange(NamedTuple):
    id: int
    name: str
    attributes: dict[str, Any]


class StatusChange(NamedTuple):
    id: int
    status: SubscriberStatus
    reason: str  # empty: "imported from FILE"


@dataclass(frozen=True, slots=True)
class Merge:
    """What merging one row into a subscriber on the list changes."""

    name: NameChange | None = None
    status: StatusChange | None = None
    resubscribed: bool = False  # made active again (only with resubscribe)
    kept_inactive: bool = False  # listed as active, stays unsubscribed/bounced/complained

    @property
    def changed(self) -> bool:
        return self.name is not None or self.status is not None


_NOTHING = Merge()


def merge_existing(row: Row, current: Listed, *, resubscribe: bool) -> Merge:
    """Merge a row into the subscriber on the list with its address."""
    name = row.name or current.name
    attributes = {**current.attributes, **row.attributes}
    rename = None
    if name != current.name or attributes != current.attributes:
        rename = NameChange(current.id, name, attributes)
    target = row.status or SubscriberStatus.ACTIVE
    if target == current.status:
        return _NOTHING if rename is None else Merge(rename)
    if target != SubscriberStatus.ACTIVE:
        return Merge(rename, StatusChange(current.id, target, row.status_reason))
    # A spam complaint is never undone by a file, even with --resubscribe (mailer.bounces).
    if resubscribe and current.status is not SubscriberStatus.COMPLAINED:
        return Merge(rename, StatusChange(current.id, target, "--resubscribe"), resubscribed=True)
    return Merge(rename, kept_inactive=True)


@dataclass
class ChunkPlan:
    """The outcome of a chunk: what to write, and what to remember of its addresses (for
    counting repeats in later chunks)."""

    new: list[Row] = field(default_factory=list)
    names: list[NameChange] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    # Addresses on the list before the import, met for the first time: whether updated.
    first_seen: dict[str, bool] = field(default_factory=dict)
    # Addresses met in an earlier chunk as unchanged that this chunk changes.
    now_updated: list[str] = field(default_factory=list)


def plan_chunk(
    merged: Mapping[str, Row],
    existing: Mapping[str, Listed],
    seen: Mapping[str, bool],
    *,
    added_from: int | None,
    resubscribe: bool,
    result: ImportResult,
) -> ChunkPlan:
    """Decide a chunk (one row per address, repeats already folded) and count it.

    ``existing``: the subscribers on the list with these addresses, by key. ``seen``: of
    those on the list before the import, the ones an earlier chunk met, with whether that
    counted as updated. ``added_from``: the lowest id this import added (a subscriber
    with it or higher met again is a duplicate), None if it added none to the list yet.
    """
    plan = ChunkPlan(new=[row for key, row in merged.items() if key not in existing])
    result.added += len(plan.new)
    for key, current in existing.items():
        earlier = seen.get(key)
        merge = merge_existing(merged[key], current, resubscribe=resubscribe)
        if merge.name is not None:
            plan.names.append(merge.name)
        if merge.status is not None:
            plan.statuses.append(merge.status)
        if merge.resubscribed:
            result.resubscribed += 1
        elif merge.kept_inactive and earlier is None:
            result.kept_inactive += 1
        changed = merge.changed
        if added_from is not None and current.id >= added_from:
            result.duplicates += 1  # added by this import
            continue
        if earlier is None:
            plan.first_seen[key] = changed
            if changed:
                result.updated += 1
            else:
                result.unchanged += 1
            continue
        result.duplicates += 1
        if changed and not earlier:  # the address counts as updated after all
            result.unchanged -= 1
            result.updated += 1
            plan.now_updated.append(key)
    return plan
