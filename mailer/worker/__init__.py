"""The worker side: periodic jobs a long-running process runs against the store.

:mod:`~mailer.worker.schedule` starts scheduled sends when due (``start_due``). As in
mailer.send, the surface is the modules other packages may import; this file imports nothing.
"""

__all__ = ["schedule"]
