"""The ``mailer`` command line. Each module registers its commands on :data:`app`."""

from __future__ import annotations

from mailer.cli import (
    compose,  # noqa: F401  (registers commands)
    db,  # noqa: F401  (registers commands)
    send,  # noqa: F401
    setup,  # noqa: F401  (registers commands)
    subscribers,  # noqa: F401
    web,  # noqa: F401  (mailer serve)
)
from mailer.cli.app import app


def main() -> None:
    app(prog_name="mailer")


__all__ = ["app", "main"]
