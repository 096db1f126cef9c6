"""The ``mailer`` command line. Each module registers its commands on :data:`app`."""

from __future__ import annotations

# Imported for their side effect: each registers its commands on `app`.
from mailer.cli import (  # noqa: F401
    bounces,
    check,
    compose,
    db,
    report,
    send,
    setup,
    signups,
    subscribers,
    web,
    worker,
)
from mailer.cli.app import app


def main() -> None:
    app(prog_name="mailer")


__all__ = ["app", "main"]
