"""Reports from a Maildir, or one from standard input (an MTA's pipe).

A Maildir's messages are files in ``new/`` and ``cur/``; handling one moves (renames) its
file into the ``.processed`` or ``.unrecognised`` subfolder (Maildir++, so an IMAP server on
the same Maildir, such as Dovecot, shows them as folders), under the same name: atomic,
never a copy and a delete, and a message another process moved first is simply skipped.
The standard library's ``mailbox.Maildir`` has no move (only add-a-copy and remove), hence
these few file operations by hand.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailer.bounces.ports import Kind
from mailer.errors import BounceError, MailboxError

__all__ = ["MAX_REPORT_BYTES", "Item", "MaildirBox", "StdinBox", "add_to_maildir"]

MAX_REPORT_BYTES = 20 * 1024 * 1024  # a report is small; a bigger message is not read whole
_SUBDIRS = ("tmp", "new", "cur")


@dataclass(frozen=True)
class Item:
    """One message of a mailbox: ``ref`` is the mailbox's own handle on it."""

    ref: str
    raw: bytes


def _is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in _SUBDIRS)


def _make_maildir(path: Path, *, folder: bool) -> None:
    for sub in _SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True)
    if folder:  # Maildir++: marks a subfolder (Dovecot, Courier)
        (path / "maildirfolder").touch(exist_ok=True)


class MaildirBox:
    """A Maildir's INBOX; handled messages go to its ``.FOLDER`` subfolders."""

    source = "maildir"

    def __init__(self, path: Path, processed: str, unrecognised: str) -> None:
        if not path.exists():
            raise MailboxError(f"bounce mailbox {path}: no such folder")
        if not _is_maildir(path):
            raise MailboxError(f"bounce mailbox {path}: not a Maildir (needs cur/, new/, tmp/)")
        self.path = path
        self.folders = {Kind.UNRECOGNISED: unrecognised}
        self.processed = processed

    def describe(self) -> str:
        return str(self.path)

    def messages(self) -> Iterator[Item]:
        for sub in ("new", "cur"):
            try:
                names = sorted(os.listdir(self.path / sub))
            except OSError as exc:
                raise MailboxError(f"bounce mailbox {self.path}: {exc.strerror}") from None
            for name in names:
                if name.startswith("."):
                    continue
                try:
                    with open(self.path / sub / name, "rb") as fh:
                        raw = fh.read(MAX_REPORT_BYTES)
                except (FileNotFoundError, IsADirectoryError):
                    continue  # moved by another process a moment ago
                yield Item(f"{sub}/{name}", raw)

    def move(self, item: Item, kind: Kind) -> bool:
        """Move ``item`` to the folder for ``kind``; False if it is gone already."""
        folder = self.path / f".{self.folders.get(kind, self.processed)}"
        _make_maildir(folder, folder=True)
        try:
            os.rename(self.path / item.ref, folder / item.ref)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise MailboxError(f"cannot move {item.ref} into {folder}: {exc.strerror}") from None
        return True

    def close(self) -> None:
        pass


def add_to_maildir(path: Path, raw: bytes) -> str:
    """Deliver ``raw`` into the Maildir at ``path`` (created if need be), as an MDA does:
    written under ``tmp/``, synced, then renamed into ``new/``. Returns the file's name."""
    try:
        _make_maildir(path, folder=False)
        name = f"{time.time_ns()}.M{secrets.token_hex(6)}P{os.getpid()}.{socket.gethostname()}"
        tmp = path / "tmp" / name
        with open(tmp, "xb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path / "new" / name)
    except OSError as exc:
        raise BounceError(f"cannot keep the report in {path}: {exc.strerror or exc}") from None
    return name


class StdinBox:
    """One message from standard input (``mailer bounces -``, e.g. an MTA's pipe).

    There is no folder to move it to: a processed report is only recorded in the database,
    an unrecognised one is also written into ``keep_dir`` (a Maildir) for a person.
    """

    source = "stdin"

    def __init__(self, stream: BinaryIO, keep_dir: Path) -> None:
        self.stream = stream
        self.keep_dir = keep_dir

    def describe(self) -> str:
        return "standard input"

    def messages(self) -> Iterator[Item]:
        raw = self.stream.read(MAX_REPORT_BYTES)
        with contextlib.suppress(OSError):
            while self.stream.read(65536):  # drain the rest, so the MTA's write does not fail
                pass
        if raw.strip():
            yield Item("-", raw)

    def move(self, item: Item, kind: Kind) -> bool:
        if kind is Kind.UNRECOGNISED:
            add_to_maildir(self.keep_dir, item.raw)
        return True

    def close(self) -> None:
        pass
