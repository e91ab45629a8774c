"""The worker: consumers that drain sources from the queue, and the sweeper.

Runs inside `kizuna serve` in embedded mode and as `kizuna worker` in production.
The sweeper makes the database the source of truth: on start and every
`sweep_interval` it re-queues sources with pending events and resends deliveries
that a dead worker left behind, so a lost queue entry or a killed process never
loses an acknowledged event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import deliveries, events
from kizuna.storage.queue import RedisQueue, SourceBusy, WorkQueue

from .processor import EventProcessor
from .sender import DeliverySender

log = logging.getLogger("kizuna.worker")


class Worker:
    def __init__(
        self,
        *,
        queue: WorkQueue,
        processor: EventProcessor,
        sender: DeliverySender,
        sessions: async_sessionmaker[AsyncSession],
        concurrency: int,
        sweep_interval: float,
    ) -> None:
        self.queue = queue
        self.processor = processor
        self.sender = sender
        self.sessions = sessions
        self.concurrency = concurrency
        self.sweep_interval = sweep_interval
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Run until `stop()`; every task it started has ended when it returns."""
        await self.sweep(first=True)
        async with asyncio.TaskGroup() as group:
            for index in range(self.concurrency):
                group.create_task(self._consume(), name=f"kizuna-consumer-{index}")
            group.create_task(self._sweep_forever(), name="kizuna-sweeper")

    def stop(self) -> None:
        """Finish the events in hand, then return from `run()` (a graceful stop: the
        events not yet started stay pending in the database for the next start)."""
        self._stopping.set()
        self.queue.wake(self.concurrency)

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                job = await self.queue.get()
            except Exception:  # Redis down or slow: the sweeper re-queues from the database
                log.exception("reading the work queue failed")
                await asyncio.sleep(1)
                continue
            if job is None:
                continue
            try:
                async with self.queue.hold(job):
                    await self.processor.drain(job.source_key, stop=self._stopping)
            except SourceBusy:
                pass  # handed back to the queue by hold()
            except Exception:  # a database or Redis outage: the sweeper brings the source back
                log.exception("draining %s failed", job.source_key)
            finally:
                await self.queue.done(job)

    async def _sweep_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.sweep_interval)
                return
            except TimeoutError:
                pass
            try:
                await self.sweep(first=False)
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", self.sweep_interval)

    async def sweep(self, *, first: bool) -> None:
        # On start every pending source is ours to queue; later only those that have
        # waited longer than a sweep interval (the rest are on their way already).
        older_than = None if first else timedelta(seconds=self.sweep_interval)
        async with self.sessions() as session:
            sources = await events.pending_sources(session, older_than=older_than)
            stuck = await deliveries.due_for_retry(
                session, older_than=timedelta(seconds=self.sweep_interval), claim_timeout=self.sender.claim_timeout
            )
        if sources:
            log.info("sweeper: %d source(s) with pending events re-queued", len(sources))
            await self.queue.put(sources)
        for delivery_id in stuck:
            await self.sender.send(delivery_id)
        if isinstance(self.queue, RedisQueue):
            await self.queue.reclaim()
