"""The ``mailer`` command line. Each module registers its commands on :data:`app`."""

from __future__ import annotations

from mailer.cli import compose, setup  # noqa: F401  (registers commands)
from mailer.cli.app import app


def main() -> None:
    app(prog_name="mailer")


__all__ = ["app", "main"]
