"""Bounces and complaints: reading the reports that come back and healing the list.

:mod:`~mailer.bounces.parse` reads a report (RFC 3464 DSN, RFC 5965 ARF, text bounces via
flufl.bounce, RFC 3834 auto-replies), :mod:`~mailer.bounces.codes` says hard, soft or
policy, :mod:`~mailer.bounces.evidence` finds the proof that it answers a copy we sent,
:mod:`~mailer.bounces.process` handles a mailbox (:mod:`~mailer.bounces.maildir`,
:mod:`~mailer.bounces.imap`, standard input) and :mod:`~mailer.bounces.job` wires it to the
store for the CLI and the worker. The store implements :mod:`~mailer.bounces.ports`.

As in mailer.send and mailer.store, the surface is the modules other packages may import
(tests/test_exported_members.py checks it); this file imports nothing.
"""

from __future__ import annotations

__all__ = ["job", "ports", "process"]
