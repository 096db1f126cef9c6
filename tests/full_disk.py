"""Run `python -m mailer ...` with a folder that is (nearly) full: real kernel failures.

Two ways (``MODES``; ``full_disk(mode)`` gives one, for ``@pytest.mark.parametrize``):

* ``tmpfs`` (root only; skipped otherwise): a tmpfs of ``size`` bytes is mounted over the
  folder in a private mount namespace (``unshare -m``), so writing there fails with ENOSPC
  ("No space left on device"), as on a full disk. The mount goes with the command; what the
  folder held at the command's end is listed first, for the test to check.
* ``file-size-limit`` (anyone): RLIMIT_FSIZE caps every file the process writes at ``size``
  bytes, so a write beyond fails with EFBIG ("File too large"; Python ignores SIGXFSZ).
  The folder is real and can be looked at afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["MODES", "FullDisk", "full_disk"]

# In the namespace: mount, run the command, then list the folder (the mount vanishes after).
_IN_NAMESPACE = (
    'size=$1 folder=$2 listing=$3; shift 3; mount -t tmpfs -o "size=$size" tmpfs "$folder" '
    '|| exit 99; "$@"; rc=$?; ls -A "$folder" > "$listing"; exit $rc'
)
_WITH_LIMIT = (
    "import os, resource, sys; size = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (size, size)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


@dataclass(frozen=True)
class FullDisk:
    """How the folder is made full: ``tmpfs`` or ``file-size-limit``."""

    mode: str

    @property
    def reason(self) -> str:
        """The strerror the failed write reports."""
        return "No space left on device" if self.mode == "tmpfs" else "File too large"

    def run(
        self, folder: Path, size: int, *args: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """Run ``python -m mailer ARGS`` with ``folder`` holding about ``size`` bytes; return
        the finished process and the names in ``folder`` when it ended."""
        folder.mkdir(parents=True, exist_ok=True)
        mailer = [sys.executable, "-m", "mailer", *args]
        if self.mode == "tmpfs":
            listing = folder.parent / f".{folder.name}.listing"
            command = ["unshare", "-m", "sh", "-c", _IN_NAMESPACE, "sh", str(size)]
            command += [str(folder), str(listing), *mailer]
        else:
            command = [sys.executable, "-c", _WITH_LIMIT, str(size), *mailer[1:]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode != 99, f"could not mount a tmpfs: {done.stderr}"
        if self.mode == "tmpfs":
            names = listing.read_text().split()
            listing.unlink()
        else:
            names = sorted(os.listdir(folder))
        return done, names


MODES = ("tmpfs", "file-size-limit")


def full_disk(mode: str) -> FullDisk:
    """A way to make a folder full (see the module doc); tmpfs needs root and unshare.
    Use with ``@pytest.mark.parametrize("mode", MODES)``."""
    if mode == "tmpfs" and (os.geteuid() != 0 or shutil.which("unshare") is None):
        pytest.skip("a real full tmpfs needs root and unshare(1); the file size limit runs")
    return FullDisk(mode)
