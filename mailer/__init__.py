"""mailer: compose a newsletter issue from Markdown snippets and send it over SMTP."""

__version__ = "0.1.0"
