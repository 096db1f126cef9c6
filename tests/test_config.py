from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.cli import app
from mailer.config import load_config, write_starter
from mailer.errors import ConfigError

runner = CliRunner()


def test_sample_config_loads(config_env: Path) -> None:
    config = load_config()
    assert config.name == "Democracy in Uzbekistan"
    assert config.postal_address.startswith("16, Sharof Rashidov Str")
    assert (
        config.list_id == "Democracy in Uzbekistan <democracy-in-uzbekistan.yuksalish.example.org>"
    )
    assert config.database_url == f"sqlite:///{config_env / 'subscribers.db'}"
    assert len(config.secret_keys()) == 1


def test_environment_overrides_file(config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_BASE_URL", "https://news.example.org/")
    monkeypatch.setenv("MAILER_CONNECTIONS", "8")
    config = load_config()
    assert config.base_url == "https://news.example.org"
    assert config.connections == 8


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAILER_BASE_URL": "ftp://x"}, "base_url"),
        ({"MAILER_BASE_URL": "https://x.example.org/a>, <https://evil"}, "base_url"),
        ({"MAILER_FROM_ADDRESS": "not an address"}, "from_address"),
        ({"MAILER_REPLY_TO": "a,b@example.org"}, "reply_to"),  # would be two addresses
        ({"MAILER_UNSUBSCRIBE_MAILTO": "u@example.org>, <https://evil"}, "unsubscribe_mailto"),
        ({"MAILER_ENVELOPE_SENDER": "Bounces <b@example.org>"}, "envelope_sender"),
        ({"MAILER_CONNECTIONS": "zero"}, "connections"),
        ({"MAILER_NAME": "Evil\r\nBcc: x@example.org"}, "name"),
        ({"MAILER_RATE": "fast"}, "rate"),
    ],
)
def test_invalid_values_name_the_key(
    config_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_missing_required_key(config_env: Path) -> None:
    text = (config_env / "mailer.toml").read_text()
    (config_env / "mailer.toml").write_text(text.replace("postal_address", "# postal_address"))
    with pytest.raises(ConfigError, match="postal_address: missing"):
        load_config()


def test_unknown_key_and_bad_toml(config_env: Path) -> None:
    (config_env / "mailer.toml").write_text('nmae = "typo"\n')
    with pytest.raises(ConfigError, match="unknown key 'nmae'"):
        load_config()
    (config_env / "mailer.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config()


def test_secret_rotation_and_env(config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (config_env / ".mailer-secret").write_text("n" * 40 + "\n" + "o" * 40 + "\n")
    assert load_config().secret_keys() == [b"n" * 40, b"o" * 40]
    monkeypatch.setenv("MAILER_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        load_config().secret_keys()


def test_starter_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text("# mine\n")
    assert write_starter(path) is False
    assert path.read_text() == "# mine\n"


def test_init_writes_starter_and_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILER_CONFIG", raising=False)
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mailer.toml").exists()
    secret = tmp_path / ".mailer-secret"
    assert secret.stat().st_mode & 0o077 == 0
    layout = tmp_path / "layouts" / "newsletter.mjml.j2"
    assert "<mjml" in layout.read_text()
    layout.write_text("customised")
    before = secret.read_text()
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert secret.read_text() == before
    assert layout.read_text() == "customised"  # never overwritten
    load_config()  # the starter itself is valid


def test_cli_error_is_one_line(config_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_BASE_URL", "nope")
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "kept existing " + str(config_env / "mailer.toml"),
        "error: base_url: 'nope' must start with http:// or https://",
    ]


def test_urls_with_passwords_stay_out_of_repr(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_SMTP_URL", "smtp://bob:smtp-pw-123@mail.example.org:587")
    monkeypatch.setenv("MAILER_DATABASE_URL", "postgresql+psycopg://app:db-pw-456@db/news")
    shown = repr(load_config())
    assert "smtp-pw-123" not in shown and "db-pw-456" not in shown
    assert "Democracy in Uzbekistan" in shown  # the rest is still there for debugging


def test_default_list_id_is_a_label_under_the_sender_domain(
    config_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_LIST_ID_DOMAIN", "")
    monkeypatch.setenv("MAILER_NAME", 'News, "Weekly" Edition')
    config = load_config()
    assert config.list_id == (
        '"News, \\"Weekly\\" Edition" <news-weekly-edition.yuksalish.example.org>'
    )


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("mailer 0.")
