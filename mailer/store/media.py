"""The issues' published images (:class:`~mailer.store.models.Media`): kept when a send
starts (the send's :class:`~mailer.send.ports.MediaStore` port), read by the web app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from mailer.errors import DatabaseUnavailable
from mailer.send.ports import MediaFile
from mailer.store.db import Store
from mailer.store.models import Media, utcnow

_MEDIA = cast(Table, Media.__table__)
_FILE = select(_MEDIA.c.content_type, _MEDIA.c.data)


class SqlMedia:
    """:class:`~mailer.send.ports.MediaStore` in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def keep(self, issue_slug: str, files: Sequence[MediaFile]) -> None:
        """Insert the files not stored yet, in one transaction; a name already there (another
        sender got there first) is the same bytes, so it is left alone."""
        if not files:
            return
        with self.store.engine.begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            now = utcnow()
            for file in files:
                conn.execute(
                    insert(_MEDIA)
                    .values(
                        name=file.name,
                        content_type=file.content_type,
                        data=file.data,
                        issue_slug=issue_slug,
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=[_MEDIA.c.name])
                )


def media_file(store: Store, name: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of the stored file ``name``, or None."""
    try:
        with store.engine.connect() as conn:
            row = conn.execute(_FILE.where(_MEDIA.c.name == name)).one_or_none()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"database error: {type(exc.orig).__name__}") from None
    return None if row is None else (row.content_type, bytes(row.data))
