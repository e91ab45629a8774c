"""Work queues that carry "this source has pending events" between processes.

The database is the source of truth; a queue entry only says which source to look
at. Losing an entry loses nothing (the sweeper re-queues pending sources), and a
duplicate entry is harmless (the source has nothing pending by then).

Two backends with one interface:
- `InProcessQueue` for embedded mode: at most one task works on a source at a time.
- `RedisQueue` for production: a Redis stream with a consumer group spreads sources
  over any number of workers; a per-source Redis lock keeps one source on one
  worker at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import LockError, ResponseError

log = logging.getLogger(__name__)


@dataclass
class Job:
    source_key: str
    # The stream entry id in Redis mode; None in-process.
    entry_id: str | None = None


class SourceBusy(Exception):
    """Another worker holds the source; the job was handed back to the queue."""


class WorkQueue(Protocol):
    async def put(self, source_keys: Iterable[str]) -> None: ...

    async def get(self) -> Job | None:
        """The next job, or None when there is nothing right now (or `wake` was called):
        consumers loop, so they can notice that they should stop."""
        ...

    def wake(self, consumers: int) -> None: ...

    def hold(self, job: Job) -> "asyncio.AbstractAsyncContextManager[None]": ...

    async def done(self, job: Job) -> None: ...


class InProcessQueue:
    """Embedded mode. A source is never queued twice or worked on by two tasks:
    a put while it is being worked on marks it dirty, and it is queued again
    when the current job finishes."""

    def __init__(self) -> None:
        # None is a wake-up call for a consumer that should check whether to stop.
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._dirty: set[str] = set()

    async def put(self, source_keys: Iterable[str]) -> None:
        for key in source_keys:
            if key in self._running:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.put_nowait(key)

    async def get(self) -> Job | None:
        key = await self._queue.get()
        if key is None:
            return None
        self._queued.discard(key)
        self._running.add(key)
        return Job(source_key=key)

    def wake(self, consumers: int) -> None:
        for _ in range(consumers):
            self._queue.put_nowait(None)

    @asynccontextmanager
    async def hold(self, job: Job) -> AsyncIterator[None]:
        yield  # exclusivity comes from _running

    async def done(self, job: Job) -> None:
        self._running.discard(job.source_key)
        if job.source_key in self._dirty:
            self._dirty.discard(job.source_key)
            await self.put([job.source_key])


class RedisQueue:
    """Production mode: stream `<prefix>:events` read by the consumer group `workers`."""

    GROUP = "workers"
    # Entries read by a worker that died are claimed by another after this idle time.
    RECLAIM_IDLE_MS = 60_000
    LOCK_WAIT_SECONDS = 2.0

    def __init__(
        self, redis: Redis, prefix: str, *, consumer: str | None = None, read_count: int = 32, lock_ttl: float = 10.0
    ) -> None:
        self.redis = redis
        self.stream = f"{prefix}:events"
        self.lock_prefix = f"{prefix}:lock:source:"
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.read_count = read_count
        # A held lock is refreshed every third of its TTL; a killed worker's lock
        # lapses within one TTL and its sources move to another worker.
        self.lock_ttl = lock_ttl
        self._buffer: asyncio.Queue[Job] = asyncio.Queue()
        self._group_ready = False
        self._reading = asyncio.Lock()
        self._closing = False

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def put(self, source_keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(source_keys))
        if not keys:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                # Approximate trimming keeps the stream bounded at O(1) cost per add.
                pipe.xadd(self.stream, {"s": key}, maxlen=100_000, approximate=True)
            await pipe.execute()

    async def get(self) -> Job | None:
        """Next job, or None after one short blocking read found nothing.
        Consumer tasks share one reader (one XREADGROUP at a time)."""
        if self._buffer.empty() and not self._closing:
            async with self._reading:
                if self._buffer.empty() and not self._closing:
                    await self.ensure_group()
                    # A short BLOCK lets a stopping worker leave within a fifth of a second
                    # (an idle worker polls 5 times a second: nothing for Redis). The
                    # outer bound guards against a read that never returns (seen under
                    # load with redis-py 8), which would keep a stopping worker alive.
                    response = await asyncio.wait_for(
                        self.redis.xreadgroup(self.GROUP, self.consumer, {self.stream: ">"}, count=self.read_count, block=200),
                        timeout=5,
                    )
                    for _stream, entries in response or []:
                        for entry_id, fields in entries:
                            self._buffer.put_nowait(Job(source_key=_text(fields[b"s"]), entry_id=_text(entry_id)))
        return None if self._buffer.empty() else self._buffer.get_nowait()

    def wake(self, consumers: int) -> None:
        """Consumers stop reading; the one blocked in XREADGROUP returns within 0.2 s."""
        self._closing = True

    @asynccontextmanager
    async def hold(self, job: Job) -> AsyncIterator[None]:
        lock = self.redis.lock(
            self.lock_prefix + job.source_key, timeout=self.lock_ttl, blocking_timeout=self.LOCK_WAIT_SECONDS
        )
        if not await lock.acquire():
            # The holder drains this source; if it finished just before our event was
            # stored, the re-added entry (or the sweeper) brings the source back.
            await self.put([job.source_key])
            raise SourceBusy(job.source_key)
        refresher = asyncio.create_task(self._keep(lock, job.source_key))
        try:
            yield
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
            try:
                await lock.release()
            except LockError:
                log.warning("source lock for %s lapsed while held", job.source_key)

    async def _keep(self, lock, source_key: str) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                await lock.reacquire()
            except LockError:
                log.error("source lock for %s was lost; another worker may take the source", source_key)
                return

    async def done(self, job: Job) -> None:
        if job.entry_id is not None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(self.stream, self.GROUP, job.entry_id)
                pipe.xdel(self.stream, job.entry_id)
                await pipe.execute()

    async def reclaim(self) -> int:
        """Take over entries that a dead worker read but never acknowledged."""
        await self.ensure_group()
        _next, entries, *_ = await self.redis.xautoclaim(
            self.stream, self.GROUP, self.consumer, min_idle_time=self.RECLAIM_IDLE_MS, count=100
        )
        for entry_id, fields in entries:
            if fields:
                self._buffer.put_nowait(Job(source_key=_text(fields[b"s"]), entry_id=_text(entry_id)))
        return len(entries)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
