"""`mailer bounces` and the worker's periodic job: a mailbox, the store's ledger, one run.

:func:`run_once` is the worker's plug-in (issue 12): it reads ``bounce_mailbox`` once and
returns a :class:`~mailer.bounces.process.Summary`; run it every few minutes (README
"Bounces" suggests 5). Several processes may run it at once: a report is recorded once
(unique key, one transaction), a message another process moved first is skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from mailer.bounces.imap import ImapBox, imap_target
from mailer.bounces.maildir import MaildirBox, StdinBox
from mailer.bounces.process import Mailbox, Summary, process_mailbox
from mailer.config import Config
from mailer.errors import ConfigError
from mailer.store.bounces import SqlBounceLedger
from mailer.store.db import Store

__all__ = ["open_mailbox", "process", "run_once"]


def open_mailbox(spec: str, config: Config, stdin: BinaryIO | None = None) -> Mailbox:
    """The mailbox ``spec`` names: ``-`` (standard input), an IMAP URL or a Maildir path."""
    processed, unrecognised = config.bounce_processed_folder, config.bounce_unrecognised_folder
    if spec == "-":
        return StdinBox(stdin or sys.stdin.buffer, config.bounce_unrecognised_dir)
    if spec.startswith(("imap://", "imaps://")):
        target = imap_target(
            spec,
            password_env=config.bounce_password_env,
            ca_file=config.smtp_ca_file,
            timeout=config.smtp_timeout,
        )
        return ImapBox(target, processed, unrecognised)
    if "://" in spec:
        raise ConfigError(f"bounce mailbox: {spec.partition('://')[0]}:// is not imap or imaps")
    return MaildirBox(Path(spec).expanduser(), processed, unrecognised)


def process(config: Config, store: Store, spec: str, stdin: BinaryIO | None = None) -> Summary:
    """Handle every report in the mailbox ``spec`` (see :func:`open_mailbox`)."""
    keys = config.secret_keys()
    mailbox = open_mailbox(spec, config, stdin)
    try:
        return process_mailbox(mailbox, SqlBounceLedger(store), keys)
    finally:
        mailbox.close()


def run_once(config: Config, store: Store) -> Summary:
    """The worker's job: one pass over ``bounce_mailbox`` (nothing when it is not set)."""
    if not config.bounce_mailbox:
        return Summary(mailbox="")
    return process(config, store, config.bounce_mailbox)
