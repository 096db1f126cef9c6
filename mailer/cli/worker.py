"""`mailer worker`: the long-running sender and periodic jobs (mailer.worker)."""

from __future__ import annotations

import logging
import sys
import time

import typer

from mailer.cli.app import app, get_config
from mailer.store.db import open_store
from mailer.worker.main import Worker


def _log(line: str) -> None:
    # One line per event on stderr, stamped (systemd's journal adds its own, harmlessly).
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _log_jobs() -> None:
    """The jobs' own log lines (mailer.*: scheduled sends started or missed, the outbox) go
    to stderr like the worker's, stamped the same way."""
    logger = logging.getLogger("mailer")
    if not any(getattr(h, "mailer_worker", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler.mailer_worker = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@app.command()
def worker(ctx: typer.Context) -> None:
    """Join every issue being sent and run the periodic jobs, until SIGTERM or Ctrl-C."""
    config = get_config(ctx)
    _log_jobs()
    store = open_store(config.database_url)  # unreachable: one error line, exit 1
    try:
        running = Worker(config, store, _log)
        running.handle_signals()
        running.run()
    finally:
        store.close()
