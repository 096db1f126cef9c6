"""The public corpus of real-world bounces that ships in flufl.bounce's source release.

``scripts/test`` fetches the sdist from PyPI once, before the tests (``python -m
tests.bounces.corpus --fetch``: ``pip download`` into ``~/.cache/mailer-test``); the tests
read the messages straight from the tarball, checked against its SHA-256, and never reach
the network themselves. Without the file the corpus tests skip, unless MAILER_REQUIRE_MTA=1
(CI): then they fail.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tarfile
from functools import cache
from pathlib import Path

import pytest

from tests.mta import REQUIRE_ENV

VERSION = "6.0.0"
SHA256 = "a1df16b9d1877ae4536f7d76c00d8421fcefbe694f80f5285d05c45a2547b1bc"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mailer-test"
LABELS = Path(__file__).with_name("corpus_labels.txt")


SDIST = CACHE / f"flufl_bounce-{VERSION}.tar.gz"


def fetch() -> Path:
    """Download the sdist into the cache unless it is there (an install step, not a test)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = SDIST
    with open(CACHE / "flufl-bounce.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--no-binary", ":all:", "-d", str(CACHE), f"flufl.bounce=={VERSION}"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
    return _checked(path)


def _checked(path: Path) -> Path:
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run `python -m tests.bounces.corpus --fetch`")
    if hashlib.sha256(path.read_bytes()).hexdigest() != SHA256:
        path.unlink()
        raise RuntimeError(f"{path} is not flufl.bounce {VERSION}'s sdist (SHA-256 differs)")
    return path


@cache
def _messages() -> dict[str, bytes] | str:
    try:
        path = _checked(SDIST)
    except (OSError, RuntimeError) as exc:
        return f"cannot read flufl.bounce {VERSION}'s sdist: {exc}"
    found = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if parts[-2:-1] == ["data"] and member.name.endswith(".txt"):
                extracted = tar.extractfile(member)
                assert extracted is not None
                found[parts[-1]] = extracted.read()
    return found


def corpus() -> dict[str, bytes]:
    """Every message of the corpus, by file name (skips or fails when unavailable)."""
    found = _messages()
    if isinstance(found, str):
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{found}; {REQUIRE_ENV} is set, so it may not be skipped")
        pytest.skip(found)
    return found


def labels() -> dict[str, str]:
    """The kind a person reading each message gives it."""
    rows = (line.split() for line in LABELS.read_text("utf-8").splitlines())
    return {row[0]: row[1] for row in rows if row and not row[0].startswith("#")}


if __name__ == "__main__":
    if sys.argv[1:] != ["--fetch"]:
        sys.exit("usage: python -m tests.bounces.corpus --fetch")
    try:
        print(f"bounce corpus: {fetch()}")
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        # Offline: the corpus tests skip (or fail under MAILER_REQUIRE_MTA=1) and say why.
        print(f"bounce corpus: not fetched ({exc})", file=sys.stderr)
