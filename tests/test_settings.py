"""The one Setting table: the Config dataclass, the starter file and README agree with it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer

from mailer.cli import app
from mailer.config import STARTER, Config, load_config
from mailer.errors import ConfigError
from mailer.settings import (
    BY_NAME,
    GROUPS,
    MAX_CONNECTIONS,
    README_END,
    README_START,
    SETTINGS,
    parse_rate,
    readme_table,
    starter_text,
    with_readme_table,
)
from tests.conftest import REPO


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MAILER_") and key != "MAILER_TEST_DATABASE_URL":
            monkeypatch.delenv(key)


def _fields() -> list[dataclasses.Field[object]]:
    return [f for f in dataclasses.fields(Config) if f.name != "root"]


def test_config_fields_are_the_settings_in_order() -> None:
    assert [f.name for f in _fields()] == [s.name for s in SETTINGS]
    assert set(BY_NAME) == {s.name for s in SETTINGS}  # no name declared twice


def test_config_defaults_types_and_secrets_agree_with_the_table() -> None:
    for field in _fields():
        setting = BY_NAME[field.name]
        assert field.type == setting.kind.python_type, field.name
        assert field.repr is not setting.secret, field.name  # secrets stay out of repr
        if setting.required:
            assert field.default is dataclasses.MISSING, field.name
            assert setting.example, field.name  # the starter needs a value
            continue
        expected = Path(str(setting.default)) if field.type == "Path" else setting.default
        assert field.default == expected, field.name
        assert type(field.default) is type(expected), field.name
    assert all(s.group in GROUPS for s in SETTINGS)


def test_every_default_passes_its_own_check(tmp_path: Path) -> None:
    for setting in SETTINGS:
        if not setting.required:
            setting.kind.coerce(setting, setting.default, tmp_path)
        if setting.example is not None:
            setting.kind.coerce(setting, setting.example, tmp_path)


def test_the_starter_parses_and_yields_the_defaults(tmp_path: Path, clean_env: None) -> None:
    assert starter_text() == STARTER
    document = tomllib.loads(STARTER)
    assert document == {s.name: s.example for s in SETTINGS if s.required}
    for setting in SETTINGS:  # every setting is shown, with its help
        assert f"{setting.name} = " in STARTER, setting.name
    (tmp_path / "mailer.toml").write_text(STARTER, encoding="utf-8")
    loaded = load_config(tmp_path / "mailer.toml")
    required = {s.name: s.example for s in SETTINGS if s.required}
    defaults = Config(root=tmp_path.resolve(), **required)  # type: ignore[arg-type]
    for field in _fields():
        value = getattr(defaults, field.name)
        if isinstance(value, Path):  # relative defaults sit next to the config file
            value = tmp_path.resolve() / value
        if field.name not in ("list_id_domain", "database_url", "consent_text"):  # computed
            assert getattr(loaded, field.name) == value, field.name
    assert loaded.database_url == f"sqlite:///{tmp_path.resolve() / 'subscribers.db'}"
    assert loaded.list_id_domain == "my-newsletter.example.org"
    assert loaded.consent_text == (
        "Yes, please send me My Newsletter by email. I can unsubscribe at any time with the "
        "link in every issue."
    )


def test_commented_lines_of_the_starter_are_valid_when_uncommented(
    tmp_path: Path, clean_env: None
) -> None:
    """Uncommenting any example line gives a valid config (the starter teaches no error)."""
    text = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line
        for line in STARTER.split("\n")
    )
    text = text.replace('smtp_ca_file = "/path/to/ca.pem"', 'smtp_ca_file = "ca.pem"')
    (tmp_path / "mailer.toml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "mailer.toml")
    assert config.rate == "100/s" and config.envelope_sender == "bounces@example.org"
    assert config.smtp_ca_file == str(tmp_path.resolve() / "ca.pem")


def test_readme_settings_table_is_generated_from_the_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(README_START), readme.index(README_END) + len(README_END)
    assert readme[start:end] == readme_table(), (
        "README's settings table differs from mailer/settings.py: run "
        "`python -m mailer.settings README.md`"
    )
    assert with_readme_table(readme) == readme
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in readme


def test_the_regenerate_command_rewrites_only_the_table(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\n{README_START}\nstale\n{README_END}\n\nAfter.\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "mailer.settings", str(path)], check=True, env=env, timeout=60
    )
    assert path.read_text() == f"# Title\n\n{readme_table()}\n\nAfter.\n"


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("50/s", 50.0),
        ("3000/m", 50.0),
        ("10000/h", 10000 / 3600),
        ("1.5/s", 1.5),
        ("2/sec", 2.0),
        ("120/min", 2.0),
        ("3600/hour", 1.0),
        (" 50 / s ", 50.0),
        ("", None),
    ],
)
def test_parse_rate(text: str, per_second: float | None) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["0/s", "0.0/m", "fast", "50/d", "-1/s", "50", "1e3/s", "/s"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^rate: .* should look like 50/s, 3000/m or 10000/h$"):
        parse_rate(text)


def test_one_connections_bound_for_the_config_and_the_cli() -> None:
    command: Any = typer.main.get_command(app)  # typer's own (vendored) click Group
    option = next(p for p in command.commands["send"].params if p.name == "connections")
    assert (option.min, option.max) == (1, MAX_CONNECTIONS)
    assert BY_NAME["connections"].kind.expected.endswith(f"to {MAX_CONNECTIONS}")
