"""What the app's endpoints share: the config, its pages and, while the app runs, the store."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from mailer.config import Config
from mailer.errors import TokenError
from mailer.store.checkpoint import WalCheckpointer
from mailer.store.db import Store, open_store
from mailer.store.unsubscribe import LinkState
from mailer.tokens import TokenClaims, read_token
from mailer.web.batching import UnsubscribeBatcher
from mailer.web.masking import mask_address
from mailer.web.pages import Pages

DB_THREADS = 4
T = TypeVar("T")


class WebContext:
    """One per app: built by ``create_app`` (checks the secret key), opened by its lifespan."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.keys = config.secret_keys()  # fail at start-up, not on the first click
        self.pages = Pages(config)
        self._store: Store | None = None
        self._batcher: UnsubscribeBatcher | None = None
        self._db_threads: anyio.CapacityLimiter | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None, "the app's lifespan has not started"
        return self._store

    @property
    def batcher(self) -> UnsubscribeBatcher:
        assert self._batcher is not None, "the app's lifespan has not started"
        return self._batcher

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: the store open, WAL checkpoints in the background."""
        store = await run_in_threadpool(open_store, self.config.database_url)
        self._store, self._batcher = store, UnsubscribeBatcher(store)
        checkpoints = WalCheckpointer(store)
        checkpoints.start()
        # Database reads run in worker threads, a few at a time: more would only take turns
        # at the GIL (and the connection pool) and stretch every request's latency.
        self._db_threads = anyio.CapacityLimiter(DB_THREADS)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # GC's full collections, which would otherwise pause every request in flight.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await run_in_threadpool(checkpoints.stop)
            store.close()

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in one of the few database threads (a slow query never stalls
        the event loop)."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self._db_threads)

    def claims(self, token: str) -> TokenClaims | None:
        try:
            return read_token(self.keys, token)
        except TokenError:  # malformed or forged: the one 404, nothing else
            return None

    def not_found(self) -> HTMLResponse:
        return self.pages.error(404, "Page not found", "This link is not valid (any more).")

    def link_page(
        self, state: LinkState, view: str, token: str, status_code: int = 200
    ) -> HTMLResponse:
        return self.pages.link(
            view,
            masked=mask_address(state.email),
            token=token,
            can_resubscribe=state.can_resubscribe,
            contact=self.config.reply_to or self.config.from_address,
            status_code=status_code,
        )
