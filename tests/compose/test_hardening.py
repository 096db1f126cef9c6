"""Issue 9's compose items: bad input that used to crash, hang or mislead, now one clear line.

The simple cases (a broken file, one message fragment) are rows of tests/compose/broken.py,
run by test_issue.py (load_issue) and test_cli.py (`mailer build`, nothing written). Here:
what needs more than a row, such as memory, renamed folders, the preview, the other commands
and files that cannot be read for lack of permission.
"""

from __future__ import annotations

import dataclasses
import html
import os
import pwd
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.cli import app
from mailer.compose import compose_issue, load_issue
from mailer.compose.layout import LAYOUT
from mailer.compose.model import Newsletter
from mailer.config import load_config
from mailer.errors import ConfigError, IssueError, MailerError
from mailer.preview import Preview
from mailer.settings import show
from tests.compose.broken import alias_bomb
from tests.compose.conftest import SMALL_ISSUE
from tests.conftest import REPO

runner = CliRunner()
CONFIG = ["--config", str(REPO / "mailer.toml")]


@pytest.fixture(autouse=True)
def _no_mailer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MAILER_") and not key.startswith("MAILER_TEST_"):
            monkeypatch.delenv(key)


def _message(issue: Path, newsletter: Newsletter) -> str:
    with pytest.raises(MailerError) as info:
        compose_issue(issue, newsletter)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- item 8: the YAML alias bomb, and every quoted value cut short -------------------------


def test_an_alias_bomb_is_refused_without_expanding_it(issue: Path) -> None:
    snippet = issue / "appointment.md"
    snippet.write_text(alias_bomb())
    assert snippet.stat().st_size < 400
    tracemalloc.start()
    try:
        with pytest.raises(IssueError) as info:
            load_issue(issue)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"{snippet}:2: malformed front matter: anchors (&name) and aliases")
    assert len(message) < 250
    assert peak < 5_000_000  # it grew to 1.4 GB when the error message quoted the value


LONG = "x" * 100_000
MAPPING = "{" + ", ".join(f"k{i}: {LONG}" for i in range(9)) + "}"


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("appointment.md", f"---\ntitle: [{', '.join([LONG] * 30)}]\n---\nText\n"),
        ("appointment.md", f"---\ntitle: T\nlink: {LONG}\n---\nText\n"),
        ("appointment.md", f"---\ntitle: T\n{LONG}: v\n---\nText\n"),
        ("appointment.md", f"---\ntitle: T\nimage: {MAPPING}\n---\n"),
        ("appointment.md", f"---\ntitle: T\nlink: '{LONG}\n---\nText\n"),
        ("issue.toml", f'number = "{LONG}"\n'),
        ("issue.toml", f'number = 7\n{LONG} = 1\n'),
        ("issue.toml", f'number = [{", ".join(["1"] * 50_000)}]\n'),
    ],
    ids=["list title", "long link", "long key", "mapping", "unclosed quote", "number", "key",
         "number list"],
)  # fmt: skip
def test_values_quoted_in_errors_are_cut_short(issue: Path, file: str, text: str) -> None:
    path = issue / file
    if file == "issue.toml":  # keep the rest of the manifest: the bad key comes first
        text += path.read_text().replace("number = 7\n", "")
    path.write_text(text)
    with pytest.raises(IssueError) as info:
        load_issue(issue)
    message = str(info.value)
    assert message.startswith(str(path))
    assert len(message) < len(str(path)) + 200 and "\n" not in message, message[:300]


# --- item 17: slot markers -------------------------------------------------------------------


def test_a_slot_marker_made_by_markdown_names_the_snippet(
    issue: Path, newsletter: Newsletter
) -> None:
    (issue / "appointment.md").write_text("---\ntitle: T\n---\n\nHello %%MAILER\\_FOO%%\n")
    message = _message(issue, newsletter)
    assert message.startswith(f"{issue / 'appointment.md'}:5: the text makes a %%MAILER_")


def test_a_slot_marker_in_a_config_value_names_the_key(issue: Path, newsletter: Newsletter) -> None:
    message = _message(issue, dataclasses.replace(newsletter, tagline="Hi %%MAILER_FOO%%"))
    assert message == "tagline: cannot contain a %%MAILER_...%% slot marker"


def test_an_unknown_slot_marker_in_the_layout_names_the_layout(
    issue: Path, newsletter: Newsletter, layouts: Path
) -> None:
    layout = layouts / LAYOUT
    layout.write_text(layout.read_text().replace("Newsletter #", "%%MAILER_FOO%% #", 1))
    message = _message(issue, dataclasses.replace(newsletter, layouts_dir=layouts))
    assert message == f"{layout}: unknown slot %%MAILER_FOO%%"


@pytest.mark.parametrize(
    ("file", "old", "new", "where"),
    [
        ("appointment.md", "appointed", "appointed %%MAILER_FOO%%", "appointment.md:4"),
        ("issue.toml", 'subject = "Spring', 'subject = "%%MAILER_FOO%% Spring', "issue.toml:4"),
    ],
)
def test_preview_shows_a_slot_marker_error_not_the_stale_page(
    issue: Path, newsletter: Newsletter, file: str, old: str, new: str, where: str
) -> None:
    preview = Preview(issue, lambda: newsletter)
    assert preview.page("/")[0] == 200
    path = issue / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    status, _, page = preview.page("/")
    assert status == 500
    assert f"{issue / where}: &#x27;%%MAILER_FOO%%&#x27; is reserved" in page
    assert "A New Director Appointed" not in page  # not the last good build


def test_build_with_a_slot_marker_is_one_line(issue: Path, tmp_path: Path) -> None:
    (issue / "rankings.md").write_text("---\ntitle: R\n---\nDear %%MAILER_FRIEND%%,\n")
    result = runner.invoke(app, [*CONFIG, "build", str(issue), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: {issue / 'rankings.md'}:4: '%%MAILER_FRIEND%%' is reserved for the layout's "
        "per-reader slots; issue text cannot contain it\n"
    )
    assert not (tmp_path / "out").exists()


# --- item 17: `mailer new` with issues_dir a file; a secret file that is not UTF-8 ----------


def test_new_with_issues_dir_a_file_is_one_line(tmp_path: Path) -> None:
    issues = tmp_path / "issues"
    issues.write_text("not a folder\n")
    result = runner.invoke(app, [*CONFIG, "new", "June"], env={"MAILER_ISSUES_DIR": str(issues)})
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: issues_dir: {issues} is not a folder\n"
    assert issues.read_text() == "not a folder\n"


def test_a_secret_file_that_is_not_utf8_is_one_line_without_its_bytes(config_env: Path) -> None:
    secret = config_env / ".mailer-secret"
    secret.write_bytes(b"\xff\xfe" + b"k" * 40 + b"\n")
    with pytest.raises(ConfigError) as info:
        load_config().secret_keys()
    assert str(info.value) == (
        f"secret_key_file: {secret} is not UTF-8 text (byte 0); "
        "write the key(s) as text, one per line"
    )
    toml = config_env / "mailer.toml"
    toml.write_text(
        toml.read_text().replace('"smtp://127.0.0.1:1025"', '"maildir:./outbox"')
        + f'layouts_dir = "{REPO / "layouts"}"\n'
    )
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["send", str(SMALL_ISSUE), "--to", "reader@example.org"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {info.value}\n"
    assert "kkkk" not in result.output and not (config_env / "outbox").exists()


# --- item 18: the number's range ------------------------------------------------------------


def test_the_largest_number_is_accepted(issue: Path) -> None:
    manifest = issue / "issue.toml"
    manifest.write_text(manifest.read_text().replace("number = 7", "number = 2147483647"))
    assert load_issue(issue).meta.number == 2**31 - 1


# --- item 23: the issue folder's name is its slug -------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("025-may news#1?", "must be lowercase letters and digits in words joined by single"),
        ("025-May-2022", "must be lowercase"),
        ("025_may_2022", "must be lowercase"),
        ("025--may", "must be lowercase"),
        ("-025-may", "must be lowercase"),
        ("025-mai-é", "must be lowercase"),
        ("025-" + "a" * 61, "is 65 characters long (at most 64)"),
    ],
)
def test_the_issue_folder_name_must_be_a_slug(issue: Path, name: str, problem: str) -> None:
    renamed = issue.rename(issue.parent / name)
    with pytest.raises(IssueError) as info:
        load_issue(renamed)
    assert str(info.value).startswith(f"{renamed}: the folder name {show(name)} {problem}")


def test_dot_is_the_folder_it_names(
    issue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(issue)
    assert load_issue(Path(".")).meta.slug == "007-spring-2022"
    out = tmp_path / "out"
    result = runner.invoke(app, [*CONFIG, "build", ".", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "/issues/007-spring-2022" in (out / "index.html").read_text()  # the web link
    (issue / "sub").mkdir()
    monkeypatch.chdir(issue / "sub")
    assert load_issue(Path("..")).meta.slug == "007-spring-2022"


def test_a_folder_that_is_no_slug_cannot_be_built_from_inside(
    issue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed = issue.rename(issue.parent / "Draft Issue")
    monkeypatch.chdir(renamed)
    result = runner.invoke(app, [*CONFIG, "build", "."])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: .: the folder name 'Draft Issue' must be lowercase")


# --- item 25: symlinks -----------------------------------------------------------------------


def test_a_symlink_out_of_the_folder_is_refused_naming_it(issue: Path, tmp_path: Path) -> None:
    outside = tmp_path / "private.toml"
    shutil.move(issue / "issue.toml", outside)
    (issue / "issue.toml").symlink_to(outside)
    with pytest.raises(IssueError) as info:
        load_issue(issue)
    assert str(info.value) == (
        f"{issue / 'issue.toml'}: a symlink to {outside.resolve()}, outside the issue folder "
        "(copy the file into the folder instead)"
    )


def test_a_symlink_within_the_folder_is_read(issue: Path) -> None:
    (issue / ".drafts").mkdir()
    shutil.move(issue / "rankings.md", issue / ".drafts" / "rankings.md")
    (issue / "rankings.md").symlink_to(Path(".drafts") / "rankings.md")
    assert load_issue(issue).sections[1].articles[0].title == "Uzbekistan Rises in the Index"


def test_a_symlink_loop_is_one_line(issue: Path) -> None:
    (issue / "rankings.md").unlink()
    (issue / "rankings.md").symlink_to(issue / "loop.md")
    (issue / "loop.md").symlink_to(issue / "rankings.md")
    with pytest.raises(IssueError) as info:
        load_issue(issue)
    assert str(info.value).startswith(str(issue))


# --- item 17: files and folders that cannot be read (permission denied) ---------------------
#
# Root reads everything, whatever the mode, so chmod alone tests nothing as root. Run as root,
# these tests lower the process's *effective* user to `nobody` around the code under test: the
# kernel then checks permissions as for nobody. Their files live in a folder nobody may enter
# (pytest's tmp_path is root's only). Not covered: ACLs, read-only mounts, SELinux denials.


@contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block with permission checks on (as nobody when we are root)."""
    if os.geteuid() != 0:
        yield
        return
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no user 'nobody' to check permissions as")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder anyone may read, with a copy of the small issue, its layouts and a config."""
    folder = Path(tempfile.mkdtemp(prefix="mailer-perm-"))
    try:
        folder.chmod(0o755)
        shutil.copytree(SMALL_ISSUE, folder / "issues" / SMALL_ISSUE.name)
        shutil.copytree(REPO / "layouts", folder / "layouts")
        (folder / "config").mkdir()
        shutil.copy(REPO / "mailer.toml", folder / "config" / "mailer.toml")
        with (folder / "config" / "mailer.toml").open("a") as fh:
            fh.write(f'layouts_dir = "{folder / "layouts"}"\n')
        # The code under test imports nothing new while unprivileged: warm it up once.
        compose_issue(folder / "issues" / SMALL_ISSUE.name, _newsletter(folder))
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(folder)


def _newsletter(folder: Path) -> Newsletter:
    return Newsletter.from_config(load_config(folder / "config" / "mailer.toml"))


UNREADABLE: dict[str, tuple[str, Callable[[Path], str]]] = {
    # what to lock: (path below open_tmp, the message it must give)
    "snippet": (
        "issues/007-spring-2022/rankings.md",
        lambda p: f"{p}: cannot read: Permission denied",
    ),
    "manifest": (
        "issues/007-spring-2022/issue.toml",
        lambda p: f"{p}: cannot read: Permission denied",
    ),
    "issue folder": (
        "issues/007-spring-2022",
        lambda p: f"{p}: cannot read the folder: Permission denied",
    ),
    "layout": (
        f"layouts/{LAYOUT}",
        lambda p: f"{p}: cannot read: Permission denied",
    ),
    "layouts folder": (
        "layouts",
        lambda p: f"{p}: cannot read the layouts folder: Permission denied",
    ),
    "config folder": (
        "config",
        lambda p: f"{p / 'mailer.toml'}: cannot read: Permission denied",
    ),
}


@pytest.mark.parametrize("what", list(UNREADABLE))
def test_an_unreadable_file_or_folder_is_one_line(open_tmp: Path, what: str) -> None:
    relative, expected = UNREADABLE[what]
    locked = open_tmp / relative
    newsletter = _newsletter(open_tmp)
    locked.chmod(0)
    with unprivileged():
        with pytest.raises(MailerError) as info:
            compose_issue(
                open_tmp / "issues" / SMALL_ISSUE.name,
                _newsletter(open_tmp) if what == "config folder" else newsletter,
            )
        result = runner.invoke(
            app,
            [
                "--config",
                str(open_tmp / "config" / "mailer.toml"),
                "build",
                str(open_tmp / "issues" / SMALL_ISSUE.name),
                "-o",
                str(open_tmp / "out"),
            ],
        )
        config = open_tmp / "config" / "mailer.toml"
        preview = Preview(
            open_tmp / "issues" / SMALL_ISSUE.name,
            lambda: Newsletter.from_config(load_config(config)),
            extra=[config],
        )
        status, _, page = preview.page("/")
    assert str(info.value) == expected(locked)
    assert status == 500 and html.escape(expected(locked)) in page  # not a stale page
    assert result.exit_code == 1 and result.stderr == f"error: {expected(locked)}\n"
    assert not (open_tmp / "out").exists()
