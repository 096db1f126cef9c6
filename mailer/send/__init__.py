"""Sending an issue: the ports the store implements (ports.py), the facade the CLI calls
(service.py), messages (message.py, headers.py), SMTP and Maildir transports (transport.py),
the resumable run over the ledger (run.py), the pacing shared by cooperating runs
(rate_limit.py), the composed issue as the store keeps it (stored.py), the bulk-sender rules
(readiness.py), the sign-up outbox's confirmation emails (outbox.py) and the local
development sink (sink.py).

The package's surface is its modules: ``__all__`` names the ones other packages may import
(tests/test_exported_members.py checks it). This file imports nothing, so a light module of
the package stays light to import.
"""

__all__ = [
    "message",
    "outbox",
    "ports",
    "rate_limit",
    "readiness",
    "run",
    "service",
    "sink",
    "stored",
    "transport",
]
