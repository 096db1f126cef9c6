"""`mailer build`, `mailer new` and `mailer preview` through the CLI and over real HTTP."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.cli import app
from mailer.compose.model import Newsletter
from mailer.preview import Preview, PreviewServer
from tests.compose.broken import BROKEN
from tests.conftest import REPO, SAMPLE_ISSUE

runner = CliRunner()
CONFIG = ["--config", str(REPO / "mailer.toml")]


@pytest.fixture(autouse=True)
def _no_mailer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MAILER_") and key != "MAILER_TEST_DATABASE_URL":
            monkeypatch.delenv(key)


def test_build_writes_html_and_text_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [*CONFIG, "build", str(SAMPLE_ISSUE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    text = (out / "index.txt").read_text(encoding="utf-8")
    report = result.stdout
    assert "Issue #25, May 5, 2022: Democracy in Uzbekistan #25: May 2022" in report
    assert re.search(r"\(lead, untitled\)\s+18 articles", report)
    assert re.search(r"Uzbekistan and rankings\s+1 article\n", report)
    assert re.search(r"Success stories of Uzbekistan NGOs\s+5 articles", report)
    assert "Articles: 44" in report
    assert f"HTML:     {len(html.encode()):,} bytes (" in report
    assert "of Gmail's 102 KB clipping limit" in report
    assert f"Text:     {len(text.encode()):,} bytes" in report
    assert "Warnings: none" in report
    assert len(report.strip().split("\n")) <= 24  # one screen
    assert "/unsubscribe/SAMPLE-NOT-A-VALID-TOKEN" in html
    assert "%%MAILER_" not in html + text


def test_build_default_out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*CONFIG, "build", str(SAMPLE_ISSUE)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "025-may-2022" / "index.html").is_file()
    assert (tmp_path / "out" / "025-may-2022" / "index.txt").is_file()


def test_an_unwritable_out_folder_is_one_line(issue: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "out"
    result = runner.invoke(app, [*CONFIG, "build", str(issue), "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == f"error: cannot write the build to {out}: Not a directory\n"


def test_preview_on_a_port_in_use_is_one_line(issue: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, [*CONFIG, "preview", str(issue), "--port", str(port)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output


def test_build_warns_above_90_kb(issue: Path, tmp_path: Path) -> None:
    words = " ".join(f"word{i}" for i in range(12_000))
    (issue / "appointment.md").write_text(f"---\ntitle: Long\n---\n{words}\n")
    result = runner.invoke(app, [*CONFIG, "build", str(issue), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "Warnings: 1" in result.stdout
    assert "over Gmail's 102 KB clipping limit" in result.stdout
    assert (tmp_path / "o" / "index.html").is_file()


@pytest.mark.parametrize("case", list(BROKEN))
def test_bad_issue_exits_1_with_one_line_and_writes_nothing(
    issue: Path, tmp_path: Path, case: str
) -> None:
    breaker, expected = BROKEN[case]
    breaker(issue)
    out = tmp_path / "out"
    result = runner.invoke(app, [*CONFIG, "build", str(issue), "--out", str(out)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{{ issue.subject }}", "{{ issue.nope }}", "unknown template variable"),
        ("<mj-group>", "<mj-grup>", "invalid MJML: <mj-grup> is not an MJML element"),
        ("{% endfor %}", "{% endfro %}", "layout syntax error"),
    ],
)
def test_bad_layout_exits_1_and_writes_nothing(
    issue: Path, layouts: Path, tmp_path: Path, old: str, new: str, expected: str
) -> None:
    layout = layouts / "newsletter.mjml.j2"
    layout.write_text(layout.read_text().replace(old, new, 1))
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [*CONFIG, "build", str(issue), "--out", str(out)],
        env={"MAILER_LAYOUTS_DIR": str(layouts)},
    )
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in result.output
    assert re.match(rf"error: {re.escape(str(layout))}:\d+: ", line), line
    assert expected in line
    assert not out.exists()


def test_new_scaffolds_the_next_issue(tmp_path: Path) -> None:
    issues = tmp_path / "issues"
    shutil.copytree(SAMPLE_ISSUE, issues / SAMPLE_ISSUE.name)
    env = {"MAILER_ISSUES_DIR": str(issues)}
    result = runner.invoke(
        app, [*CONFIG, "new", "June 2022: Élections & more!", "--date", "2022-06-02"], env=env
    )
    assert result.exit_code == 0, result.output
    folder = issues / "026-june-2022-elections-more"
    assert sorted(p.name for p in folder.iterdir()) == ["first-article.md", "issue.toml"]
    manifest = (folder / "issue.toml").read_text()
    assert "number = 26\ndate = 2022-06-02\n" in manifest
    assert 'subject = "June 2022: Élections & more!"' in manifest
    # The scaffold builds as it is.
    built = runner.invoke(app, [*CONFIG, "build", str(folder), "--out", str(tmp_path / "o")])
    assert built.exit_code == 0, built.output
    assert "Articles: 1" in built.stdout
    # The next one gets 027.
    again = runner.invoke(app, [*CONFIG, "new", "June 2022: Élections & more!"], env=env)
    assert again.exit_code == 0
    assert (issues / "027-june-2022-elections-more").is_dir()


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    issues = tmp_path / "issues"
    issues.mkdir()
    (issues / "001-hello").write_text("an existing file in the way")
    result = runner.invoke(app, [*CONFIG, "new", "Hello"], env={"MAILER_ISSUES_DIR": str(issues)})
    assert result.exit_code == 1
    assert "001-hello: already exists; not overwriting it" in result.stderr
    assert (issues / "001-hello").read_text() == "an existing file in the way"


def test_new_rejects_bad_date(tmp_path: Path) -> None:
    result = runner.invoke(
        app, [*CONFIG, "new", "Hi", "--date", "May 5"], env={"MAILER_ISSUES_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "expected a date like 2022-05-05" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("build", ["index.html and index.txt", "102 KB", "--out"]),
        ("preview", ["127.0.0.1", "rebuild", "--port", "/index.txt"]),
        ("new", ["next numbered issue folder", "never overwritten", "--date"]),
    ],
)
def test_help_is_useful(command: str, words: list[str]) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for word in words:
        assert word in result.stdout


# --- preview ---------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


@pytest.fixture
def preview(issue: Path, newsletter: Newsletter) -> Iterator[str]:
    server = PreviewServer(Preview(issue, lambda: newsletter), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(url: str, predicate: object, timeout: float = 10.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = _get(url)
        if (callable(predicate) and predicate(status, body)) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)


def test_preview_serves_and_rebuilds_on_change(preview: str, issue: Path) -> None:
    status, page = _get(preview)
    assert status == 200
    assert "<title>\nSpring news from the valley\n</title>" in page
    assert "A New Director Appointed" in page
    assert 'fetch("/_version"' in page  # the page reloads itself after a rebuild
    status, text = _get(preview + "index.txt")
    assert status == 200 and "A New Director Appointed\n------" in text
    status, web = _get(preview + "web")
    assert status == 200 and "This is the web version" in web

    snippet = issue / "appointment.md"
    snippet.write_text(snippet.read_text().replace("A New Director", "Another Director"))
    status, page = _wait_for(preview, lambda s, b: "Another Director Appointed" in b)
    assert status == 200 and "Another Director Appointed" in page

    snippet.write_text("---\ntitle: Broken\nsection: nope\n---\n")
    status, page = _wait_for(preview, lambda s, b: s == 500)
    assert status == 500
    assert "appointment.md:3: unknown front matter key" in page

    snippet.write_text("---\ntitle: Fixed again\n---\nText.\n")
    status, page = _wait_for(preview, lambda s, b: s == 200)
    assert status == 200 and "Fixed again" in page
    assert _get(preview + "nope")[0] == 404


def test_preview_watcher_rebuilds_without_requests(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    rebuilt = threading.Event()
    local = dataclasses.replace(newsletter, layouts_dir=layouts)
    state = Preview(issue, lambda: local, notify=lambda s: rebuilt.set())
    server = PreviewServer(state, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert rebuilt.wait(10)  # the first build
        rebuilt.clear()
        manifest = issue / "issue.toml"
        manifest.write_text(manifest.read_text().replace("Spring news", "Summer news"))
        assert rebuilt.wait(10)
        assert "Summer news from the valley" in state.html
        rebuilt.clear()
        layout = layouts / "newsletter.mjml.j2"
        layout.write_text(layout.read_text().replace("View this issue in your browser", "Web!"))
        assert rebuilt.wait(10)
        assert ">Web!</a>" in state.html and not state.error
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_preview_command_prints_url_and_serves(issue: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", *CONFIG, "preview", str(issue), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if found := re.search(r"at (http://127\.0\.0\.1:\d+/)", line):
                url = found.group(1)
        assert url, "no URL printed"
        status, page = _get(url)
        assert status == 200 and "Spring news from the valley" in page
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # also closes the pipes
