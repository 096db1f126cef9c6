"""The web app: tokenized one-click unsubscribe and the archive (`mailer serve`)."""

from mailer.web.app import create_app

__all__ = ["create_app"]
