"""mailer.files: output written whole or not at all, shared by export, report --csv and build.

The three commands' own failures on a full disk are tested where they live
(tests/store/test_store_export_output.py for export and report); `mailer build` is here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailer.errors import CsvError, IssueError
from mailer.files import atomic_output, atomic_outputs
from tests.conftest import REPO, SAMPLE_ISSUE
from tests.full_disk import MODES, full_disk


def test_the_file_appears_only_once_complete(tmp_path: Path) -> None:
    target = tmp_path / "all.csv"
    with atomic_output(target, error=CsvError) as out:
        out.write("email\n")
        assert not target.exists()  # a reader never sees half a file
        (temporary,) = os.listdir(tmp_path)
        assert temporary.startswith(".all.csv.")
    assert target.read_text(encoding="utf-8") == "email\n"
    assert os.listdir(tmp_path) == ["all.csv"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # as open("w") makes it


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "all.csv"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    full = pytest.raises(CsvError, match=r"^cannot write .*all\.csv: No space left on device$")
    with full, atomic_output(target, error=CsvError) as out:
        out.write("new, half")
        raise OSError(28, "No space left on device")
    with pytest.raises(KeyboardInterrupt), atomic_output(target, error=CsvError) as out:
        out.write("new, half")  # any interruption: nothing replaced either
        raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["all.csv"]
    with atomic_output(target, error=CsvError) as out:
        out.write("new\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode


def test_a_link_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text("old\n", encoding="utf-8")
    (tmp_path / "link.csv").symlink_to("real.csv")
    with atomic_output(tmp_path / "link.csv", error=CsvError) as out:
        out.write("new\n")
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text(encoding="utf-8") == "new\n"


def test_folders_made_for_a_failed_write_are_removed(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept").write_text("")
    paths = [tmp_path / "out" / "a" / "b" / "index.html", tmp_path / "out" / "a" / "b" / "x"]
    failed = pytest.raises(IssueError, match=r"^cannot write the build: File too large$")
    with (
        failed,
        atomic_outputs(paths, error=IssueError, label="the build", make_parents=True) as (
            html,
            _text,
        ),
    ):
        html.write("<html>")
        raise OSError(27, "File too large")
    assert os.listdir(tmp_path / "out") == ["kept"]  # a/ and a/b/ gone, the rest untouched


def test_a_device_is_written_directly_and_its_failure_is_one_error() -> None:
    full = pytest.raises(CsvError, match=r"^cannot write /dev/full: No space left on device$")
    with full, atomic_output(Path("/dev/full"), error=CsvError) as out:
        out.write("x" * 100_000)
    with atomic_output(Path("/dev/null"), error=CsvError) as out:
        out.write("fine")
    assert Path("/dev/null").is_char_device()  # written to, not replaced by a rename


@pytest.mark.parametrize("mode", MODES)
def test_build_on_a_full_disk_writes_nothing(tmp_path: Path, mode: str) -> None:
    disk = full_disk(mode)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    out = tmp_path / "out"
    config = str(REPO / "mailer.toml")
    done, left = disk.run(
        out,
        16 * 1024,
        "--config",
        config,
        "build",
        str(SAMPLE_ISSUE),
        "-o",
        str(out / "025"),
        env=env,
    )
    assert done.returncode == 1
    assert done.stderr == f"error: cannot write the build to {out / '025'}: {disk.reason}\n"
    assert left == []  # no empty output folder, no temporary file
