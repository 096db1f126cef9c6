"""Group commit for the app's writes: one-click unsubscribes and sign-ups.

Mail providers may send thousands of one-click POSTs in a burst. Committing each in its own
transaction costs about a millisecond of database work apiece; instead, the POSTs that arrive
while one transaction runs wait for the next, which writes them all at once
(:func:`mailer.store.unsubscribe.unsubscribe_many`, :func:`mailer.store.signups.
record_signups`). A request is answered only after the transaction holding its write has
committed, so a 200 always means "persisted". With no load a batch is a single request and
nothing waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio

from mailer.store.db import Store
from mailer.store.unsubscribe import LinkState, LinkUnsubscribe, unsubscribe_many

MAX_BATCH = 500  # bounds one transaction's lock time and statement size
Request = TypeVar("Request")
Result = TypeVar("Result")


class Batcher(Generic[Request, Result]):
    """Runs ``write(store, requests)`` (one transaction, a result per request in order) for
    the requests that arrived while the previous one ran."""

    def __init__(
        self, store: Store, write: Callable[[Store, Sequence[Request]], Sequence[Result]]
    ) -> None:
        self.store = store
        self._write = write
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None
        # One transaction at a time per process: the next batch forms while it runs.
        self._limiter = anyio.CapacityLimiter(1)

    async def submit(self, request: Request) -> Result:
        """Write ``request`` in the next batch; return its result once that is committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        # The client may hang up; the write is still committed with its batch.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    results = await anyio.to_thread.run_sync(
                        self._write,
                        self.store,
                        [request for request, _ in batch],
                        limiter=self._limiter,
                    )
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            self._writer = None


class UnsubscribeBatcher(Batcher[LinkUnsubscribe, LinkState | None]):
    def __init__(self, store: Store) -> None:
        super().__init__(store, unsubscribe_many)

    async def unsubscribe(self, request: LinkUnsubscribe) -> LinkState | None:
        """Unsubscribe in the next batch; return once it is committed."""
        return await self.submit(request)
