"""Group commit for webhook events.

Each webhook request hands its rows to `EventIngest.store` and waits; one flusher task
(owned by the app) writes everything that arrived while the previous INSERT was in
flight in ONE transaction, then answers every waiting request. A lone request is
never delayed (there is no timer); under load the per-request cost of a transaction
(round trips, statement compilation, pool checkout) is shared by the batch. A request
still gets its 200 only after its own rows are committed. Queueing the stored sources for
the workers runs beside the flusher, never in the way of the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kizuna.storage import events
from kizuna.storage.db import is_unavailable, lost_connection
from kizuna.storage.dependency import Dependency
from kizuna.storage.models import EventStatus
from kizuna.storage.queue import QueueUnavailable, WorkQueue

log = logging.getLogger("kizuna.ingest")

# Bounded so one transaction stays short even when a backlog builds up.
MAX_BATCH_REQUESTS = 256


class StorageUnavailable(Exception):
    """The database could not be reached: nothing of the request was stored (LINE
    redelivers it after a non-2xx answer)."""


class EventIngest:
    def __init__(self, engine: AsyncEngine, queue: WorkQueue) -> None:
        self.engine = engine
        self.queue = queue
        self.database = Dependency("the database")
        self._pending: list[tuple[list[dict], asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        # The flusher keeps one connection between batches (no pool checkout, ping and
        # reset per batch); it is dropped after any error and opened again when needed.
        self._connection: AsyncConnection | None = None
        self._to_queue: dict[str, None] = {}
        self._queue_wakeup = asyncio.Event()

    async def store(self, rows: list[dict]) -> list[events.StoredEvent]:
        """Store one request's events; returns those that were new. Raises StorageUnavailable
        at once while the database is known to be down (until the next try is due)."""
        if not self.database.should_try():
            raise StorageUnavailable("the database is down")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._wakeup.set()
        return await future

    async def run(self) -> None:
        """The flusher (and the queuer beside it): runs for the app's lifetime."""
        freeze_startup_heap()
        queuer = asyncio.create_task(self._queue_forever(), name="kizuna-ingest-queue")
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    batch = self._pending[:MAX_BATCH_REQUESTS]
                    del self._pending[:MAX_BATCH_REQUESTS]
                    await self._flush(batch)
        finally:
            queuer.cancel()
            await asyncio.gather(queuer, return_exceptions=True)
            for _rows, future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the server is stopping"))
            await self._close_connection()

    async def _flush(self, batch: list[tuple[list[dict], asyncio.Future]]) -> None:
        rows = list({row["webhook_event_id"]: row for rows, _ in reversed(batch) for row in rows}.values())
        try:
            stored = await self._store(rows)
        except Exception as error:
            if is_unavailable(error):
                self.database.failed(error)
                for _rows, future in batch:
                    _fail(future, StorageUnavailable(str(error)))
                return
            if len(batch) == 1:
                log.exception("storing webhook events failed")
                _fail(batch[0][1], RuntimeError("storing webhook events failed"))
                return
            # Store each request alone, so one bad request fails only itself.
            for single in batch:
                await self._flush([single])
            return
        self.database.succeeded()
        new = {event.webhook_event_id: event for event in stored}
        for request_rows, future in batch:
            if not future.done():
                future.set_result([new[row["webhook_event_id"]] for row in request_rows if row["webhook_event_id"] in new])
        # Parked events (invalid on arrival) are never processed: nothing to queue.
        self._to_queue.update(dict.fromkeys(event.source_key for event in stored if event.status == EventStatus.PENDING))
        if self._to_queue:
            self._queue_wakeup.set()

    async def _queue_forever(self) -> None:
        """Hands stored sources to the work queue beside the flusher, so the next batch's
        INSERT does not wait for Redis (one round trip less per batch on the ack's path).
        Sources that pile up meanwhile go in one call. Stored is what counts: if Redis is
        down, or the process dies first, the sweeper queues them from the database."""
        while True:
            await self._queue_wakeup.wait()
            self._queue_wakeup.clear()
            sources, self._to_queue = self._to_queue, {}
            try:
                await self.queue.put(sources)
            except QueueUnavailable:
                pass  # logged once per outage by the queue
            except Exception:
                log.exception("queueing %d source(s) failed", len(sources))

    async def _store(self, rows: list[dict]) -> list[events.StoredEvent]:
        """One transaction on the kept connection. A kept connection that the server closed
        while it idled (a restart) fails at once: then the batch is tried once more on a new
        connection (the INSERT skips what a lost attempt may have stored)."""
        while True:
            reused = self._connection is not None
            if self._connection is None:
                self._connection = await self.engine.connect()
            connection = self._connection
            try:
                async with connection.begin():
                    return await events.store_events(connection, rows)
            except Exception as error:
                self._connection = None
                await _ignore(connection.invalidate())
                await _ignore(connection.close())
                if not (reused and lost_connection(error)):
                    raise

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await _ignore(connection.close())


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Keep the objects built at start-up (modules, models, dictionaries: a few hundred
    thousand) out of Python's cyclic garbage collector, once per process.

    Otherwise every full collection walks all of them: 80-140 ms with the event loop
    stopped, several times a minute under webhook load, which was the p99 of the ack
    (docs/benchmarks.md, issue 12). Objects made later are collected as usual. Belongs
    to process start-up; it sits here because the ingest is what a pause hurts most."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


async def _ignore(awaitable) -> None:
    with contextlib.suppress(Exception):
        await awaitable


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
