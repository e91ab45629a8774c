"""Group commit for webhook events.

Each webhook request hands its rows to `EventIngest.store` and waits; one flusher task
(owned by the app) writes everything that arrived while the previous INSERT was in
flight in ONE transaction, then answers every waiting request. A lone request is
never delayed (there is no timer); under load the per-request cost of a transaction
(round trips, statement compilation, pool checkout) is shared by the batch. A request
still gets its 200 only after its own rows are committed.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.storage import events
from kizuna.storage.queue import WorkQueue

log = logging.getLogger("kizuna.ingest")

# Bounded so one transaction stays short even when a backlog builds up.
MAX_BATCH_REQUESTS = 256


class EventIngest:
    def __init__(self, engine: AsyncEngine, queue: WorkQueue) -> None:
        self.engine = engine
        self.queue = queue
        self._pending: list[tuple[list[dict], asyncio.Future]] = []
        self._wakeup = asyncio.Event()

    async def store(self, rows: list[dict]) -> list[events.StoredEvent]:
        """Store one request's events; returns those that were new."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._wakeup.set()
        return await future

    async def run(self) -> None:
        """The flusher: runs for the app's lifetime."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    batch = self._pending[:MAX_BATCH_REQUESTS]
                    del self._pending[:MAX_BATCH_REQUESTS]
                    await self._flush(batch)
        finally:
            for _rows, future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the server is stopping"))

    async def _flush(self, batch: list[tuple[list[dict], asyncio.Future]]) -> None:
        rows = list({row["webhook_event_id"]: row for rows, _ in reversed(batch) for row in rows}.values())
        try:
            async with self.engine.begin() as connection:
                stored = await events.store_events(connection, rows)
        except Exception:
            if len(batch) == 1:
                _fail(batch[0][1])
                return
            # Store each request alone, so one bad request fails only itself.
            for single in batch:
                await self._flush([single])
            return
        new = {event.webhook_event_id: event for event in stored}
        for request_rows, future in batch:
            if not future.done():
                future.set_result([new[row["webhook_event_id"]] for row in request_rows if row["webhook_event_id"] in new])
        # Parked events (invalid on arrival) are never processed: nothing to queue.
        sources = dict.fromkeys(event.source_key for event in stored if event.status == "pending")
        if sources:
            try:
                await self.queue.put(sources)
            except Exception:
                # Stored is what counts: the sweeper queues these from the database.
                log.exception("queueing %d stored event(s) failed", len(stored))


def _fail(future: asyncio.Future) -> None:
    if not future.done():
        log.exception("storing webhook events failed")
        future.set_exception(RuntimeError("storing webhook events failed"))
