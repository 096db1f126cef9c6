"""Sending an issue: messages (message.py), SMTP and Maildir transports (transport.py), the
resumable run over the ledger (run.py) and the local development sink (sink.py)."""
