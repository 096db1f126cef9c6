from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from mailer.cli import app
from mailer.config import STARTER, Config, load_config, write_starter
from mailer.errors import ConfigError
from mailer.send.message import dkim_signer
from mailer.send.transport import MaildirTransport, smtp_target, transport_from_config
from tests.conftest import REPO

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


# --- types, bounds, tables and paths (one Setting table: mailer/settings.py) --------------

REQUIRED = """\
name = "News"
from_address = "news@example.org"
postal_address = "1 Example Street"
base_url = "https://news.example.org"
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MAILER_") and key != "MAILER_TEST_DATABASE_URL":
            monkeypatch.delenv(key)


def _load(folder: Path, text: str) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mailer.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _error(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(folder, text)
    return str(info.value)


SECONDS = "expected a number of seconds > 0 and at most 3600, got"
CONNECTIONS = "expected a whole number from 1 to 64, got"
RATE = "should look like 50/s, 3000/m or 10000/h"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('smtp_timeout = "abc"', f"{SECONDS} 'abc'"),
        ("smtp_timeout = inf", f"{SECONDS} inf"),
        ("smtp_timeout = nan", f"{SECONDS} nan"),
        ("smtp_timeout = 1e300", f"{SECONDS} 1e+300"),
        ("smtp_timeout = 0", f"{SECONDS} 0"),
        ("smtp_timeout = -5", f"{SECONDS} -5"),
        ("smtp_timeout = true", f"{SECONDS} true"),
        ("connections = true", f"{CONNECTIONS} true"),
        ("connections = 2.9", f"{CONNECTIONS} 2.9"),
        ("connections = 100000", f"{CONNECTIONS} 100000"),
        ("connections = 0", f"{CONNECTIONS} 0"),
        ('connections = "four"', f"{CONNECTIONS} 'four'"),
        ("connections = [4]", f"{CONNECTIONS} [4]"),
        (
            "max_messages_per_connection = 1e10",
            "expected a whole number from 1 to 100000, got 10000000000.0",
        ),
        ("tagline = 5", "expected text, got 5"),
        ("reply_to = false", "expected an email address, got false"),
        ("layouts_dir = 3", "expected a path (text), got 3"),
        ("dkim_key_file = 1979-05-27", "expected a path (text), got datetime.date(1979, 5, 27)"),
        ('rate = "50/d"', f"'50/d' {RATE}"),
        ('rate = "0/s"', f"'0/s' {RATE}"),
        ('smtp_url = "maildir:"', "maildir: needs a path, e.g. maildir:./outbox"),
    ],
)
def test_type_errors_name_the_key_and_the_type(
    tmp_path: Path, clean_env: None, line: str, message: str
) -> None:
    key = line.split(" = ")[0]
    assert _error(tmp_path, REQUIRED + line + "\n") == f"{key}: {message}"


def test_numbers_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_SMTP_TIMEOUT", "2.5")
    monkeypatch.setenv("MAILER_CONNECTIONS", "64")
    monkeypatch.setenv("MAILER_MAX_MESSAGES_PER_CONNECTION", " 10 ")
    config = _load(tmp_path, REQUIRED + "connections = 2.0\n")
    assert (config.smtp_timeout, config.connections, config.max_messages_per_connection) == (
        2.5,
        64,
        10,
    )
    assert isinstance(config.connections, int) and isinstance(config.smtp_timeout, float)
    for env, value, expected in [
        ("MAILER_SMTP_TIMEOUT", "infinity", "a number of seconds"),
        ("MAILER_SMTP_TIMEOUT", "3601", "a number of seconds"),
        ("MAILER_CONNECTIONS", "65", "a whole number from 1 to 64, got '65'"),
        ("MAILER_CONNECTIONS", "1.5", "a whole number from 1 to 64, got '1.5'"),
    ]:
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(tmp_path / "mailer.toml")
        monkeypatch.delenv(env)


def test_quoted_values_are_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_FROM_ADDRESS", "x" * 5000)
    message = _error(tmp_path, REQUIRED)
    assert message == f"from_address: '{'x' * 40}…' is not an email address"
    monkeypatch.delenv("MAILER_FROM_ADDRESS")
    monkeypatch.setenv("MAILER_CONNECTIONS", "9" * 5000)
    assert len(_error(tmp_path, REQUIRED)) < 120


def test_a_bad_secret_setting_is_not_quoted(tmp_path: Path, clean_env: None) -> None:
    message = _error(tmp_path, REQUIRED + "smtp_url = 12345678\n")
    assert (
        message
        == "smtp_url: expected an smtp://, smtps:// or maildir: URL (text) (value not shown)"
    )
    assert "12345678" not in _error(tmp_path, REQUIRED + "database_url = 12345678\n")


GROUPED = """\
[newsletter]
name = "News"
from_address = "news@example.org"
postal_address = "1 Example Street"
base_url = "https://news.example.org"
tagline = "Monthly"

[storage]
layouts_dir = "my-layouts"

[smtp]
smtp_timeout = 12

[sending]
connections = 8
rate = "10/s"

[dkim]
dkim_selector = "mail"
"""

FLAT = (
    REQUIRED
    + """\
tagline = "Monthly"
layouts_dir = "my-layouts"
smtp_timeout = 12
connections = 8
rate = "10/s"
dkim_selector = "mail"
"""
)


def test_flat_grouped_and_mixed_forms_agree(tmp_path: Path, clean_env: None) -> None:
    flat = _load(tmp_path, FLAT)
    assert _load(tmp_path, GROUPED) == flat
    mixed = REQUIRED + '[smtp]\nsmtp_timeout = 12\n[sending]\nconnections = 8\nrate = "10/s"\n'
    mixed += '[newsletter]\ntagline = "Monthly"\n[storage]\nlayouts_dir = "my-layouts"\n'
    assert _load(tmp_path, mixed + '[dkim]\ndkim_selector = "mail"\n') == flat
    dotted = REQUIRED + 'tagline = "Monthly"\nstorage.layouts_dir = "my-layouts"\n'
    dotted += 'smtp.smtp_timeout = 12\nsending.connections = 8\nrate = "10/s"\n'
    assert _load(tmp_path, dotted + 'dkim.dkim_selector = "mail"\n') == flat


def test_the_repository_config_and_the_starter_stay_valid(tmp_path: Path, clean_env: None) -> None:
    assert load_config(REPO / "mailer.toml").name == "Democracy in Uzbekistan"
    assert _load(tmp_path, STARTER).name == "My Newsletter"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (REQUIRED + "connections = 2\n[sending]\nconnections = 3\n",
         "connections is set twice: in the top level and in [sending]"),
        (REQUIRED + "[sending]\nrate = '1/s'\n[smtp]\nrate = '2/s'\n",
         "rate is set twice: in [sending] and in [smtp]"),
        (REQUIRED + "[smtp]\nconnections = 3\n",
         "connections belongs in [sending], not in [smtp]"),
        (REQUIRED.replace('name = "News"\n', "") + "[storage]\nname = 'News'\n",
         "name belongs in [newsletter], not in [storage]"),
        (REQUIRED + "[mail]\nsmtp_url = 'smtp://x'\n",
         "unknown table [mail] (the tables are "
         "[newsletter], [storage], [smtp], [sending], [dkim], [bounces], [signup])"),
        (REQUIRED + "[smtp]\nsmtp_urll = 'smtp://x'\n",
         "unknown key 'smtp_urll' in [smtp] (did you mean 'smtp_url'?)"),
        (REQUIRED + "conections = 3\n", "unknown key 'conections' (did you mean 'connections'?)"),
    ],
)  # fmt: skip
def test_a_key_in_two_places_or_the_wrong_table_is_an_error(
    tmp_path: Path, clean_env: None, text: str, message: str
) -> None:
    assert _error(tmp_path, text) == f"{tmp_path / 'mailer.toml'}: {message}"


PATHS = """\
layouts_dir = "look"
issues_dir = "sub/issues"
secret_key_file = "keys/secret"
dkim_key_file = "keys/dkim.pem"
smtp_ca_file = "ca.pem"
database_url = "sqlite:///data/news.db"
smtp_url = "maildir:outbox"
"""


def test_every_path_is_relative_to_the_config_file(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = _load(folder, REQUIRED + PATHS)
    root = folder.resolve()
    assert config.root == root
    assert config.layouts_dir == root / "look"
    assert config.issues_dir == root / "sub" / "issues"
    assert config.secret_key_file == root / "keys" / "secret"
    assert config.dkim_key_file == str(root / "keys" / "dkim.pem")
    assert config.smtp_ca_file == str(root / "ca.pem")
    assert config.database_url == f"sqlite:///{root / 'data' / 'news.db'}"
    assert config.smtp_url == f"maildir:{root / 'outbox'}"
    # The environment's relative paths too (README: relative to the config file's folder).
    monkeypatch.setenv("MAILER_DATABASE_URL", "sqlite+pysqlite:///env.db?timeout=5")
    monkeypatch.setenv("MAILER_SMTP_URL", "maildir://box")
    config = load_config(folder / "mailer.toml")
    assert config.database_url == f"sqlite+pysqlite:///{root / 'env.db'}?timeout=5"
    assert config.smtp_url == f"maildir:{root / 'box'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/news.db",
        "sqlite:///:memory:",
        "sqlite://",
        "postgresql+psycopg://user@127.0.0.1:5432/news",
    ],
)
def test_absolute_and_server_database_urls_are_kept(
    tmp_path: Path, clean_env: None, url: str
) -> None:
    assert _load(tmp_path, REQUIRED + f'database_url = "{url}"\n').database_url == url


def test_absolute_and_unset_paths_are_kept(tmp_path: Path, clean_env: None) -> None:
    text = REQUIRED + 'layouts_dir = "/srv/layouts"\nsmtp_url = "maildir:/var/mail/out"\n'
    config = _load(tmp_path, text)
    assert config.layouts_dir == Path("/srv/layouts")
    assert config.smtp_url == "maildir:/var/mail/out"
    assert config.dkim_key_file == config.smtp_ca_file == ""


def test_relative_paths_work_from_another_folder(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are really found (and created) there, by the code that uses them."""
    folder = tmp_path / "conf"
    (folder / "keys").mkdir(parents=True)
    (folder / "data").mkdir()  # SQLite creates the file, not its folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / "keys" / "dkim.pem").write_bytes(pem)
    (folder / "ca.pem").write_text("not needed until a TLS connection\n")
    dkim = 'dkim_selector = "mail"\ndkim_domain = "example.org"\n'
    (folder / "mailer.toml").write_text(REQUIRED + PATHS + dkim)
    monkeypatch.chdir(elsewhere)

    config = load_config(folder / "mailer.toml")
    assert dkim_signer(config) is not None
    assert isinstance(transport_from_config(config), MaildirTransport)
    smtp = dataclasses.replace(config, smtp_url="smtp://127.0.0.1:2525")
    assert smtp_target(smtp).ca_file == str(folder.resolve() / "ca.pem")

    result = runner.invoke(app, ["--config", str(folder / "mailer.toml"), "init"])
    assert result.exit_code == 0, result.output
    assert (folder / "data" / "news.db").is_file()
    assert (folder / "keys" / "secret").is_file()
    assert (folder / "look" / "newsletter.mjml.j2").is_file()
    assert (folder / "sub" / "issues").is_dir()
    assert list(elsewhere.iterdir()) == []


def test_rate_accepts_the_send_forms(tmp_path: Path, clean_env: None) -> None:
    for rate in ("50/s", "3000/m", "10000/h", "1.5/s", "2/sec", "5/min", "9/hour", " 50 / s "):
        assert _load(tmp_path, REQUIRED + f'rate = "{rate}"\n').rate == rate.strip()
