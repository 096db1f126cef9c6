"""The web app: tokenized one-click unsubscribe and the archive (`mailer serve`)."""

from mailer.web.app import create_app
from mailer.web.serve import authority, listen, serve

__all__ = ["authority", "create_app", "listen", "serve"]
