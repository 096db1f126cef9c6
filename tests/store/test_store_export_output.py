"""`subscribers export` and `report --csv` write their file whole or not at all, and a full
disk, /dev/full or a closed standard output is one line (real processes, real failures)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.send.ports import DeliveryResult, DeliveryStatus, IssueFacts
from mailer.store.csv_import import import_csv
from mailer.store.db import Store
from mailer.store.ledger import SqlIssues
from tests.full_disk import MODES, full_disk

SUBSCRIBERS = 3000  # an export of about 400 KB


@pytest.fixture
def env(config_env: Path, database_url: str, store: Store) -> dict[str, str]:
    """A list of SUBSCRIBERS, and the environment of the `mailer` processes."""
    rows = "".join(f"reader{i}@example.org,Reader {i},org {i}\n" for i in range(SUBSCRIBERS))
    import_csv(store, io.StringIO("email,name,org\n" + rows, newline=""))
    return {**os.environ, "MAILER_DATABASE_URL": database_url}


def _mailer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mailer", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("mode", MODES)
def test_export_on_a_full_disk_is_one_line_and_leaves_no_file(
    config_env: Path, env: dict[str, str], mode: str
) -> None:
    disk = full_disk(mode)
    out = config_env / "out"
    done, left = disk.run(out, 128 * 1024, "subscribers", "export", "out/all.csv", env=env)
    assert done.returncode == 1
    assert done.stderr == f"error: cannot write out/all.csv: {disk.reason}\n"
    assert left == []  # no truncated CSV cut mid-row, no temporary file


def test_a_failed_export_keeps_the_previous_file(config_env: Path, env: dict[str, str]) -> None:
    out = config_env / "out"
    out.mkdir()
    (out / "all.csv").write_text("the export of last week\n", encoding="utf-8")
    done, left = full_disk("file-size-limit").run(
        out, 128 * 1024, "subscribers", "export", "out/all.csv", env=env
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert left == ["all.csv"]
    assert (out / "all.csv").read_text(encoding="utf-8") == "the export of last week\n"
    again = _mailer("subscribers", "export", "out/all.csv", env=env)  # with room: whole
    assert again.stdout == f"exported {SUBSCRIBERS} subscribers to out/all.csv\n"
    lines = (out / "all.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == SUBSCRIBERS + 1 and lines[-1].endswith(",org 2999")
    assert sorted(os.listdir(out)) == ["all.csv"]


def test_export_to_dev_full_is_one_line(env: dict[str, str]) -> None:
    done = _mailer("subscribers", "export", "/dev/full", env=env)
    assert done.returncode == 1
    assert done.stderr == "error: cannot write /dev/full: No space left on device\n"


@pytest.mark.parametrize("stdout", ["closed", "/dev/full", "a closed pipe"])
def test_export_to_a_full_or_closed_standard_output_is_one_line(
    env: dict[str, str], stdout: str
) -> None:
    command = [sys.executable, "-m", "mailer", "subscribers", "export"]
    if stdout == "closed":
        done = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *command],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
        reason = "it is closed"
    elif stdout == "/dev/full":
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                command, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=60
            )
        reason = "No space left on device"
    else:
        read, write = os.pipe()
        os.close(read)  # nobody reads: like `mailer subscribers export | head` after head quit
        try:
            done = subprocess.run(
                command, stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=60
            )
        finally:
            os.close(write)
        reason = "Broken pipe"
    assert done.returncode == 1
    # One line: no traceback, and no second complaint from the interpreter's last flush.
    assert done.stderr == f"error: cannot write to standard output: {reason}\n"


@pytest.fixture
def sent_issue(store: Store, config_env: Path) -> Path:
    """An issue whose send recorded a failure for every subscriber (for `report`)."""
    issues = SqlIssues(store)
    facts = IssueFacts("007-test", 7, "Test issue", "2022-05-05", "0" * 64, "<p>web</p>")
    record, _ = issues.start(facts, force=False)
    ledger = issues.ledger(record.id)
    rows = ledger.next_rows(deferred_below=3, after_id=0, limit=SUBSCRIBERS)
    reply = "550 5.1.1 mailbox unavailable"
    ledger.record(
        [DeliveryResult(r.delivery_id, r.subscriber_id, DeliveryStatus.FAILED, reply) for r in rows]
    )
    ledger.close()
    return config_env / "issues" / "007-test"


@pytest.mark.parametrize("mode", MODES)
def test_report_csv_on_a_full_disk_is_one_line_and_leaves_no_file(
    config_env: Path, env: dict[str, str], sent_issue: Path, mode: str
) -> None:
    disk = full_disk(mode)
    out = config_env / "out"
    done, left = disk.run(
        out, 64 * 1024, "report", str(sent_issue), "--csv", "out/problems.csv", env=env
    )
    assert done.returncode == 1
    assert done.stderr == f"error: cannot write out/problems.csv: {disk.reason}\n"
    assert left == []
    devfull = _mailer("report", str(sent_issue), "--csv", "/dev/full", env=env)
    assert devfull.returncode == 1
    assert devfull.stderr == "error: cannot write /dev/full: No space left on device\n"
    whole = _mailer("report", str(sent_issue), "--csv", "out/problems.csv", env=env)
    assert whole.returncode == 0, whole.stderr
    assert len((out / "problems.csv").read_text(encoding="utf-8").splitlines()) == SUBSCRIBERS + 1
