"""The typer application and what every command shares: config loading and error handling.

Commands are thin: load the config, open what they need, call one library function, print.
A :class:`~mailer.errors.MailerError` raised anywhere below becomes one ``error: ...`` line
on stderr and exit code 1 (never a traceback); Ctrl-C exits 130.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from mailer import __version__
from mailer.config import Config, load_config
from mailer.errors import MailerError


class _MailerGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except MailerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_MailerGroup,
    help="Compose a newsletter issue from Markdown snippets and send it to your subscribers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="MAILER_CONFIG",
        help="Path to mailer.toml (default: ./mailer.toml).",
        show_default=False,
    ),
) -> None:
    ctx.obj = {"config_path": config}


def get_config(ctx: typer.Context) -> Config:
    """The validated config for this invocation (loaded once)."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if "config" not in obj:
        obj["config"] = load_config(obj.get("config_path"))
        root.obj = obj
    config: Config = obj["config"]
    return config


def config_file(ctx: typer.Context) -> Path | None:
    """The --config path as given, if any."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    path: Path | None = obj.get("config_path")
    return path
