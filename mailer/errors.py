"""The one exception tree of mailer.

Every error a user can cause or meet derives from :class:`MailerError`; the CLI turns
any of them into one line on stderr and a non-zero exit, never a traceback::

    MailerError
    ├── ConfigError            mailer.toml / MAILER_* missing or invalid (names the key)
    ├── IssueError             an issue folder, snippet or layout is wrong (names file:line)
    ├── StoreError             the subscriber database
    │   ├── DatabaseUnavailable    cannot connect / open
    │   ├── SchemaMismatch         database is older or newer than the code
    │   ├── InvalidAddress         an email address or display name fails validation
    │   ├── InvalidAttribute       an attribute name or `--attr key=value` is malformed
    │   ├── InvalidRow             a CSV row is invalid (the import skips it: line, reason)
    │   ├── NotFound               no such subscriber / issue
    │   └── CsvError               a CSV file cannot be read or has no email column
    ├── TokenError             a malformed, forged or unknown unsubscribe token
    ├── ServeError             `mailer serve` cannot listen on its address, or did not start
    ├── SendError              delivery
    │   ├── TransportError         auth, TLS or connection failure: the run stops
    │   ├── ContentChanged         the issue changed after its send started
    │   ├── IssueBusy              SQLite: another run is sending this issue right now
    │   └── LeaseLost              a cooperating run's claim on its rows ran out: it stops
    └── BounceError            reading bounce and complaint reports
        └── MailboxError           the bounce mailbox is missing, unreachable or refuses us

Messages must never contain a secret (SMTP password, secret key, DSN password).
"""

from __future__ import annotations


class MailerError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(MailerError):
    """Configuration is missing or invalid."""


class IssueError(MailerError):
    """An issue folder cannot be composed."""


class StoreError(MailerError):
    """The subscriber store failed."""


class DatabaseUnavailable(StoreError):
    """The database cannot be opened or reached."""


class SchemaMismatch(StoreError):
    """The database schema is not the one this code expects."""


class InvalidAddress(StoreError):
    """An email address or display name is invalid."""


class InvalidAttribute(StoreError):
    """A subscriber attribute is malformed (no name, a line break, a field's name), or an
    ``--attr`` option is not ``key=value``."""


class InvalidRow(StoreError):
    """A row of a subscriber CSV file is invalid (too many fields, not UTF-8, a bad status
    or date). The import skips the row and reports its line with this message."""


class NotFound(StoreError):
    """A subscriber or issue does not exist."""


class CsvError(StoreError):
    """A subscriber CSV file cannot be read, or its header has no email column."""


class TokenError(MailerError):
    """An unsubscribe token is malformed, forged or unknown."""


class ServeError(MailerError):
    """The web app cannot be served: its address is taken or not ours, or it did not start."""


class SendError(MailerError):
    """Sending failed."""


class TransportError(SendError):
    """The SMTP connection failed in a way that stops the run (auth, TLS, unreachable)."""


class ContentChanged(SendError):
    """The issue's content changed after its send started."""


class IssueBusy(SendError):
    """Another run holds the issue's send lock (SQLite: one run of an issue at a time)."""


class LeaseLost(SendError):
    """A cooperating run's lease on its ledger rows ran out (frozen, or the database was
    unreachable too long): it sends nothing more of them; a fresh claim may resume."""


class BounceError(MailerError):
    """Bounce and complaint reports cannot be processed."""


class MailboxError(BounceError):
    """The bounce mailbox does not exist, cannot be reached, or refuses the login."""
