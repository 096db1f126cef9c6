"""Group commit for one-click unsubscribes.

Mail providers may send thousands of one-click POSTs in a burst. Committing each in its own
transaction costs about a millisecond of database work apiece; instead, the POSTs that arrive
while one transaction runs wait for the next, which unsubscribes them all at once
(:func:`mailer.store.unsubscribe.unsubscribe_many`). A request is answered only after the
transaction holding its unsubscribe has committed, so a 200 always means "persisted". With no
load a batch is a single click and nothing waits.
"""

from __future__ import annotations

import asyncio

import anyio

from mailer.store.db import Store
from mailer.store.unsubscribe import LinkState, LinkUnsubscribe, unsubscribe_many

MAX_BATCH = 500  # bounds one transaction's lock time and statement size


class UnsubscribeBatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[LinkUnsubscribe, asyncio.Future[LinkState | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        # One transaction at a time per process: the next batch forms while it runs.
        self._limiter = anyio.CapacityLimiter(1)

    async def unsubscribe(self, request: LinkUnsubscribe) -> LinkState | None:
        """Unsubscribe in the next batch; return once it is committed."""
        future: asyncio.Future[LinkState | None] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        # The client may hang up; the unsubscribe is still committed with its batch.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    results = await anyio.to_thread.run_sync(
                        unsubscribe_many,
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
