"""Importing subscribers from CSV: fast, forgiving, all or nothing.

The entry points: :func:`import_file` (a path, or "-" for standard input, with an optional
rejects file) and :func:`import_csv` (text already open). The file is streamed in chunks
(memory stays flat in the number of rows) and the whole import is one transaction: an
interrupted or killed import leaves the list as it was. The parts:

* :mod:`mailer.store.csv_reader` reads the header and validates rows (no database);
* :mod:`mailer.store.import_rules` decides what each row does and counts it;
* a strategy per backend reads the list and writes to it:
  :mod:`mailer.store.import_chunked` (PostgreSQL: chunk by chunk under row locks) and
  :mod:`mailer.store.import_staged` (SQLite: staged and planned without the write lock,
  merged under it, decided again under it if the list changed meanwhile).

Rules (see README "Subscribers"):

* header row: ``email`` (or ``e-mail``, ``email address``), optional ``name``; the columns
  ``export`` writes (uid, status, timestamps) are read back; any other column becomes an
  attribute (empty cells are not stored). UTF-8 with or without BOM, comma, semicolon or tab
  (guessed from the header), quoted fields, any line ends, blank lines ignored. A column
  named twice, or a file in another encoding (UTF-16 is named), is refused.
* in rows of mailer's own export (its ``mailer_export`` column), the quote export put
  before a formula-like cell is taken off again (:mod:`mailer.store.csv_cells`).
* an address already on the list, or repeated in the file (in any case), is merged: a
  non-empty name replaces the old one, attributes are added or replaced.
* an unsubscribed, bounced or complained address is never made active again, unless
  ``resubscribe`` (logged in its history with source "import"). A file may set a non-active
  status (e.g. an export from elsewhere), which is also logged.
* invalid rows and forgotten addresses are skipped and reported with line and reason;
  the rejects file may not be the input.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mailer.errors import CsvError
from mailer.store.csv_reader import Reject, parse_rows, read_layout
from mailer.store.db import Store
from mailer.store.import_chunked import import_chunked
from mailer.store.import_list import RejectLog
from mailer.store.import_rules import MAX_REPORTED, ImportResult
from mailer.store.import_staged import import_staged

__all__ = ["CHUNK_ROWS", "MAX_REPORTED", "ImportResult", "Reject", "import_csv", "import_file"]

CHUNK_ROWS = 2000


def import_file(
    store: Store,
    source: str | Path,
    *,
    rejects: Path | None = None,
    resubscribe: bool = False,
    progress: Callable[[int], None] | None = None,
    stdin: IO[bytes] | None = None,
) -> ImportResult:
    """Import the CSV file at ``source`` ("-" for standard input) in one transaction.

    The rejects CSV (line, reason, then the row's own columns) is written next to its final
    name and renamed into place only when the import commits.
    """
    name = "<stdin>" if str(source) == "-" else str(source)
    with contextlib.ExitStack() as stack:
        if str(source) == "-":
            binary = stdin or sys.stdin.buffer
        else:
            try:
                binary = stack.enter_context(open(source, "rb"))
            except OSError as exc:
                raise CsvError(f"cannot read {source}: {exc.strerror or exc}") from None
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        stack.callback(text.detach)  # leave the caller's stdin open
        out = None
        if rejects is not None:
            _refuse_input_as_rejects(binary, rejects, name)
            try:
                fd, tmp = tempfile.mkstemp(
                    dir=rejects.parent, prefix=f".{rejects.name}.", suffix=".tmp"
                )
            except OSError as exc:
                raise CsvError(f"cannot write {rejects}: {exc.strerror or exc}") from None
            out = stack.enter_context(open(fd, "w", encoding="utf-8", newline=""))
            stack.callback(_remove, tmp)
        result = import_csv(
            store, text, name=name, resubscribe=resubscribe, rejects_out=out, progress=progress
        )
        if out is not None and rejects is not None:
            out.close()
            os.replace(tmp, rejects)
        return result


def _refuse_input_as_rejects(binary: IO[bytes], rejects: Path, name: str) -> None:
    """CsvError if the rejects file is the input (also through a link): writing the
    rejects would replace the list being imported."""
    try:
        wanted = os.stat(rejects)
        given = os.fstat(binary.fileno())
    except (OSError, ValueError):  # no such rejects file yet, or input without a descriptor
        return
    if (wanted.st_dev, wanted.st_ino) == (given.st_dev, given.st_ino):
        raise CsvError(
            f"cannot write the rejects to {rejects}: it is the file being imported "
            f"({name}); choose another name"
        )


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def import_csv(
    store: Store,
    text: IO[str],
    *,
    name: str = "<csv>",
    resubscribe: bool = False,
    rejects_out: IO[str] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportResult:
    """Import CSV text (opened with ``newline=""``) in one transaction; see the module doc."""
    try:
        layout = read_layout(text, name)
        writer = None
        if rejects_out is not None:
            writer = csv.writer(rejects_out)
            writer.writerow(["line", "reason", *layout.header])
        strategy = import_staged if store.engine.dialect.name == "sqlite" else import_chunked
        return strategy(
            store,
            parse_rows(text, layout),
            name=name,
            resubscribe=resubscribe,
            rejects=RejectLog(writer),
            progress=progress,
            chunk_rows=chunk_rows,
        )
    except UnicodeDecodeError as exc:  # only from a stream not opened by import_file
        raise CsvError(f"{name}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise CsvError(f"{name}: unreadable CSV: {exc}") from None
    except OSError as exc:  # reading the file or writing the rejects failed midway
        raise CsvError(f"{name}: {exc.strerror or exc}; nothing was imported") from None
