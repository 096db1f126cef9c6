"""Output files written whole or not at all, and standard output that fails in one line.

``mailer subscribers export FILE``, ``mailer report --csv FILE`` and ``mailer build`` write
through :func:`atomic_outputs`: each file goes to a temporary file beside it, is flushed to
disk, and is renamed over its name only once every file of the set is complete. On any
failure (a full disk, a killed process, Ctrl-C) the targets are as they were, no temporary
file is left, folders the call created are removed again, and an ``OSError`` becomes one
:class:`~mailer.errors.MailerError` line naming the file. A target that exists and is not a
regular file (``/dev/stdout``, a FIFO, ``/dev/full``) cannot be replaced by a rename: it is
written directly, and a failure is still the one line.

The standard library has no atomic writer; the few lines here are the usual recipe
(mkstemp in the target's folder, fsync, os.replace).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mailer.errors import MailerError

__all__ = ["atomic_output", "atomic_outputs", "standard_output"]

ErrorType = Callable[[str], MailerError]


@contextmanager
def atomic_output(
    path: Path, *, error: ErrorType, label: str | None = None, newline: str | None = ""
) -> Iterator[IO[str]]:
    """One UTF-8 text file, written whole or not at all (see the module doc). ``error``
    makes the exception for ``cannot write LABEL: REASON`` (label: the path)."""
    with atomic_outputs([path], error=error, label=label, newline=newline) as (stream,):
        yield stream


@contextmanager
def atomic_outputs(
    paths: Sequence[Path],
    *,
    error: ErrorType,
    label: str | None = None,
    newline: str | None = "",
    make_parents: bool = False,
) -> Iterator[list[IO[str]]]:
    """UTF-8 text files renamed into place together once the block ends without an error.

    An ``OSError`` in the block is taken as the outputs' (writing them failed) and becomes
    ``error("cannot write LABEL: REASON")``; ``label`` defaults to the first path.
    ``make_parents``: create missing folders of the first path (removed again on failure).
    """
    created: list[Path] = []
    pending: list[_Pending] = []
    name = label or str(paths[0])
    complete = False
    try:
        try:
            if make_parents:
                created = _make_folders(paths[0].parent)
            for path in paths:
                pending.append(_Pending.open(path, newline))
            yield [p.stream for p in pending]
            for p in pending:
                p.finish()
            for p in pending:  # rename only once every file is complete
                p.commit()
            complete = True
        except OSError as exc:
            raise error(f"cannot write {name}: {exc.strerror or exc}") from None
    finally:
        for p in pending:
            p.discard()
        for folder in [] if complete else reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never anything it did not make


class _Pending:
    """One output: a temporary file beside the target, or the target itself when it is not
    a regular file (a device or FIFO cannot be replaced by a rename)."""

    def __init__(self, target: str, temp: str | None, stream: IO[str]) -> None:
        self.target, self.temp, self.stream = target, temp, stream
        self.done = False

    @classmethod
    def open(cls, path: Path, newline: str | None) -> _Pending:
        target = os.path.realpath(path)  # through a symlink, as open("w") would write
        try:
            mode = os.stat(target).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            return cls(target, None, open(target, "w", encoding="utf-8", newline=newline))
        folder, base = os.path.split(target)
        fd, temp = tempfile.mkstemp(dir=folder or ".", prefix=f".{base}.", suffix=".tmp")
        try:
            # mkstemp makes 0600; the file gets an existing target's mode, else the umask's.
            os.fchmod(fd, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
            # Closed by finish() or discard(): the stream outlives this function.
            stream = open(fd, "w", encoding="utf-8", newline=newline)  # noqa: SIM115
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        return cls(target, temp, stream)

    def finish(self) -> None:
        self.stream.flush()
        if self.temp is not None:
            os.fsync(self.stream.fileno())  # the data is on disk before the name points at it
        self.stream.close()

    def commit(self) -> None:
        if self.temp is not None:
            os.replace(self.temp, self.target)
        self.done = True

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        if self.temp is not None and not self.done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    missing.reverse()
    for each in missing:
        each.mkdir(exist_ok=True)
    return missing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def standard_output(*, error: ErrorType) -> Iterator[IO[str]]:
    """Standard output for a command's data; closed, full or a closed pipe becomes
    ``error("cannot write to standard output: REASON")``, and the process's last flush
    at exit then writes nowhere instead of printing a second error."""
    out = sys.stdout
    if out is None:  # started with file descriptor 1 closed
        raise error("cannot write to standard output: it is closed")
    try:
        yield out
        out.flush()
    except OSError as exc:
        _silence(out)
        raise error(f"cannot write to standard output: {exc.strerror or exc}") from None


def _silence(out: IO[str]) -> None:
    """Point ``out``'s file descriptor at /dev/null: what is still buffered is dropped."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # not a real file (a test runner's buffer)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
