"""README.md documents every command, subcommand, option and config key (sqlite-utils habit).

The commands come from the typer app itself (its click command tree), so a new command or
option without a line in the README fails here. An option counts where the README talks about
its command: in a section (heading to heading) that names ``mailer <command>``; the global
options belong in "## Configuration".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from mailer.cli import app
from mailer.settings import SETTINGS
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
SECTIONS = re.split(r"(?m)^(?=#{1,6} )", README)
GLOBAL_SECTION = "## Configuration"


def commands(command: Any, path: tuple[str, ...] = ("mailer",)) -> Iterator[tuple[str, Any]]:
    """Every command under ``command`` (hidden ones too), as ("mailer db upgrade", command)."""
    yield " ".join(path), command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


COMMANDS = dict(commands(typer.main.get_command(app)))
OPTIONS = [
    (name, option)
    for name, command in COMMANDS.items()
    for param in command.params
    if param.param_type_name == "option"
    for option in (*param.opts, *param.secondary_opts)
]
# The keys a mailer.toml may set: the Setting table (tests/test_settings.py ties it to Config).
CONFIG_KEYS = [setting.name for setting in SETTINGS]


def token(text: str) -> re.Pattern[str]:
    """``text`` as a whole word: `--force` is not found in `--forced`, nor `-c` in `-csv`."""
    return re.compile(rf"(?<![\w-]){re.escape(text)}(?![\w-])")


def sections_about(command: str) -> list[str]:
    if command == "mailer":
        return [s for s in SECTIONS if s.startswith(GLOBAL_SECTION + "\n")]
    return [s for s in SECTIONS if token(command).search(s)]


def test_the_walk_finds_the_cli() -> None:
    assert {"mailer send", "mailer subscribers import", "mailer db upgrade"} <= set(COMMANDS)
    assert ("mailer send", "--dry-run") in OPTIONS and ("mailer", "--config") in OPTIONS
    assert {"smtp_url", "base_url", "database_url"} <= set(CONFIG_KEYS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_in_the_readme(command: str) -> None:
    assert sections_about(command), f"README.md does not mention `{command}`"


@pytest.mark.parametrize(("command", "option"), OPTIONS, ids=[" ".join(o) for o in OPTIONS])
def test_every_option_is_in_the_readme_where_its_command_is(command: str, option: str) -> None:
    found = any(token(option).search(section) for section in sections_about(command))
    assert found, f"README.md: no `{option}` where it describes `{command}`"


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_every_config_key_is_in_the_readme(key: str) -> None:
    assert f"`{key}`" in README, f"README.md does not describe the config key `{key}`"
