"""`mailer worker`: a long-running sender that joins every issue being sent and runs the
periodic jobs (:mod:`mailer.worker.jobs`: the bounce mailbox, the sign-up outbox, scheduled
sends...).

:mod:`~mailer.worker.sending` sends (cooperating with every other sender on PostgreSQL, one
at a time under the send lock on SQLite), :mod:`~mailer.worker.periodic` runs the jobs in a
thread, :mod:`~mailer.worker.main` is the loop: signals, retries with backoff while the
database is away. :mod:`~mailer.worker.schedule` starts scheduled sends when due
(``start_due``). It wires the store's adapters into the services, as the CLI does.
"""

__all__ = ["jobs", "main", "periodic", "schedule", "sending"]
