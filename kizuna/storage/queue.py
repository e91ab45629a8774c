"""Work queues that carry "this source has pending events" between processes.

The database is the source of truth; a queue entry only says which source to look
at. Losing an entry loses nothing (the sweeper re-queues pending sources), and a
duplicate entry is harmless (the source has nothing pending by then).

Two backends with one interface:
- `InProcessQueue` for embedded mode: at most one task works on a source at a time.
- `RedisQueue` for production: a Redis stream read by a consumer group spreads sources
  over any number of workers; a per-source Redis lock keeps one source on one worker
  at a time. Redis may restart, be flushed or be unreachable for a while: the queue
  recreates its stream and group, backs off while Redis is down, and tells the
  worker (`reset`) that entries may have been lost so it sweeps the database at once.

A hold on a source is a `Lease`. Its holder must be alive and working: the Redis lock
is renewed only while the holder makes progress (`Lease.touch`), so a holder that dies
or hangs loses the source within a lock TTL. A lease can also be lost while its holder
works (Redis restarted, the lock lapsed): the holder then stops after the current
event, and the database's fencing (events.mark_done) keeps that event from being
committed twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError, ResponseError

from .dependency import Dependency

log = logging.getLogger(__name__)

# What "Redis is unreachable or refusing work" looks like from redis-py.
REDIS_DOWN = (RedisError, OSError)

# XADD each source key given as an argument to the stream KEYS[1]; approximate trimming keeps
# the stream bounded at O(1) cost per add.
ADD_ALL = """
for _, source in ipairs(ARGV) do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', 100000, '*', 's', source)
end
return #ARGV
"""

# A batch's source locks (KEYS), each held with the token ARGV[1]: renewed for ARGV[2] ms
# when the token is still the lock's, one flag per key (0: the lock lapsed or is another's).
RENEW_ALL = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

# Let go of a batch's source locks (KEYS) that still hold the token ARGV[1]; how many had
# lapsed (or were another's by then, which is left alone).
RELEASE_ALL = """
local lapsed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
  else
    lapsed = lapsed + 1
  end
end
return lapsed
"""


@dataclass
class Job:
    source_key: str
    # The stream entry id in Redis mode; None in-process.
    entry_id: str | None = None


@dataclass
class Lease:
    """A worker's hold on one source."""

    # Set when the hold may have passed to another worker: finish the current event, take no more.
    lost: bool = False
    last_progress: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        """The holder made progress: keep the hold alive."""
        self.last_progress = time.monotonic()


class SourceBusy(Exception):
    """Another worker holds the source. It looks for new events after it lets go, so
    the job can be dropped."""


class QueueUnavailable(Exception):
    """Redis is unreachable: nothing was queued or held. The sweeper re-queues from the
    database once it is back."""


class WorkQueue(Protocol):
    # Set when queued entries may have been lost (Redis restarted or flushed).
    reset: asyncio.Event

    async def put(self, source_keys: Iterable[str]) -> None: ...

    async def get(self) -> Job | None:
        """The next job, or None when there is nothing right now (or `wake` was called):
        consumers loop, so they can notice that they should stop. Never raises."""
        ...

    def wake(self, consumers: int) -> None: ...

    def hold(self, job: Job) -> "asyncio.AbstractAsyncContextManager[Lease]": ...

    async def done(self, job: Job) -> None:
        """Never raises."""
        ...


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
        self.reset = asyncio.Event()  # nothing in memory is lost while the process lives

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
    async def hold(self, job: Job) -> AsyncIterator[Lease]:
        yield Lease()  # exclusivity comes from _running

    async def done(self, job: Job) -> None:
        self._running.discard(job.source_key)
        if job.source_key in self._dirty:
            self._dirty.discard(job.source_key)
            await self.put([job.source_key])


class RedisQueue:
    """Production mode: stream `<prefix>:events` read by the consumer group `workers`."""

    GROUP = "workers"
    # Longest wait for a stream read (an idle worker polls 5 times a second: nothing for Redis);
    # a stopping worker gives its read up at once.
    READ_BLOCK_MS = 200

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        consumer: str | None = None,
        read_count: int = 64,
        lock_ttl: float = 10.0,
        work_timeout: float = 60.0,
        health: Dependency | None = None,
    ) -> None:
        self.redis = redis
        self.stream = f"{prefix}:events"
        self.lock_prefix = f"{prefix}:lock:source:"
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.read_count = read_count
        # A held lock is renewed every third of its TTL while its holder makes progress; a
        # killed worker's lock lapses within one TTL, a stuck one's within work_timeout + TTL.
        self.lock_ttl = lock_ttl
        self.work_timeout = work_timeout
        self.health = health or Dependency("Redis")
        self.reset = asyncio.Event()
        self._buffer: asyncio.Queue[Job] = asyncio.Queue()
        self._group_ready = False
        self._reading = asyncio.Lock()
        self._closing = asyncio.Event()
        self._closed: asyncio.Future | None = None  # done once `wake` closed the queue (ends a read)
        # redis-py's Script runs EVALSHA and loads the script again after a restart (NOSCRIPT).
        self._add_all = redis.register_script(ADD_ALL)
        self._renew_all = redis.register_script(RENEW_ALL)
        self._release_all = redis.register_script(RELEASE_ALL)

    async def put(self, source_keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(source_keys))
        if not keys:
            return
        if not self.health.should_try():
            raise QueueUnavailable("Redis is down")
        try:
            # One script call for the whole batch: a pipeline of XADDs cost ~16 µs per source
            # in redis-py, a third of the webhook's own work (bench/webhook_wrk.py).
            await self._add_all(keys=[self.stream], args=keys)
        except REDIS_DOWN as error:
            self.health.failed(error)
            raise QueueUnavailable(str(error)) from error
        self.health.succeeded()

    async def get(self) -> Job | None:
        """Next job, or None after one short blocking read found nothing (or Redis is
        down: then after a backoff). Consumer tasks share one reader."""
        if self._buffer.empty() and not self._closing.is_set():
            async with self._reading:
                if self._buffer.empty() and not self._closing.is_set():
                    await self._read()
        return None if self._buffer.empty() else self._buffer.get_nowait()

    async def get_many(self, limit: int) -> list[Job]:
        """Up to `limit` jobs: the next one (as `get`) and whatever else the last read
        left in the buffer, so a consumer can work on several sources at once."""
        job = await self.get()
        if job is None:
            return []
        jobs = [job]
        while len(jobs) < limit and not self._buffer.empty():
            jobs.append(self._buffer.get_nowait())
        return jobs

    async def _read(self) -> None:
        if not self.health.should_try():
            await _wait(self._closing, self.health.backoff())
            return
        try:
            await self._ensure_group()
            # NOACK: an entry is read once and never enters a pending list. A worker that
            # dies with entries in hand loses nothing: their events are still pending in
            # the database, and the sweeper queues them again.
            response = await self._read_unless_closing()
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                self.health.failed(error)
                await _wait(self._closing, self.health.backoff())
                return
            # Redis restarted or was flushed: the stream and its group are gone, and with
            # them any entries not yet read. Recreate them; the worker sweeps the database.
            log.warning("Redis lost the work stream %s (restarted or flushed); recreating it and re-queueing pending events", self.stream)
            self._group_ready = False
            self.reset.set()
            return
        except (RedisError, OSError, TimeoutError) as error:
            self.health.failed(error)
            await _wait(self._closing, self.health.backoff())
            return
        self.health.succeeded()
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                if fields and b"s" in fields:
                    self._buffer.put_nowait(Job(source_key=_text(fields[b"s"]), entry_id=_text(entry_id)))

    async def _read_unless_closing(self) -> list | None:
        """One blocking read, given up when the queue closes: a stopping worker then leaves at
        once instead of after the block (tests start and stop a worker hundreds of times). A read
        given up may have taken entries: NOACK left them nowhere else, and their events are
        still pending in the database for the sweeper (as when a worker dies)."""
        if self._closing.is_set():  # (woken while the group was being made)
            return None
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        read = asyncio.ensure_future(self.redis.xreadgroup(
            self.GROUP, self.consumer, {self.stream: ">"}, count=self.read_count, block=self.READ_BLOCK_MS, noack=True))
        try:
            # The outer bound guards against a read that never returns (the client's socket
            # timeout should already end it).
            await asyncio.wait({read, self._closed}, timeout=5 + self.READ_BLOCK_MS / 1000, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()  # redis-py drops the connection of a command cancelled mid-answer
                await asyncio.wait({read})
        if read.cancelled():
            if self._closed.done():
                return None
            raise TimeoutError("the stream read did not return")
        return read.result()  # its error, if it failed

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the start of the stream: after a flush it holds only entries added since.
            await self.redis.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    def wake(self, consumers: int) -> None:
        """Consumers stop reading; the one blocked in XREADGROUP gives its read up."""
        self._closing.set()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    @asynccontextmanager
    async def hold(self, job: Job) -> AsyncIterator[Lease]:
        # thread_local=False: the token belongs to this lock object, not to the thread
        # that every task of the process shares.
        lock = self.redis.lock(self.lock_prefix + job.source_key, timeout=self.lock_ttl, blocking=False, thread_local=False)
        try:
            acquired = await lock.acquire()
        except REDIS_DOWN as error:
            self.health.failed(error)
            raise QueueUnavailable(str(error)) from error
        if not acquired:
            raise SourceBusy(job.source_key)
        lease = Lease()
        released = asyncio.Event()
        renewer = asyncio.create_task(self._renew(lock, lease, released, job.source_key), name=f"kizuna-lease-{job.source_key}")
        try:
            yield lease
        finally:
            # The renewer is told to stop, never cancelled: a cancellation that lands
            # while it is inside a Redis command can be swallowed (redis-py relies on
            # asyncio.wait_for, which on Python 3.11 may return the command's result
            # instead of raising), and it would then renew the lock forever.
            released.set()
            await asyncio.wait([renewer], timeout=self.lock_ttl)
            try:
                await lock.release()
            except LockError:
                if not lease.lost:
                    log.warning("the lock on %s lapsed while it was held", job.source_key)
            except REDIS_DOWN as error:
                self.health.failed(error)  # it lapses on its own within a TTL

    async def _renew(self, lock, lease: Lease, released: asyncio.Event, source_key: str) -> None:
        renewed_at = time.monotonic()
        while not await _wait(released, self.lock_ttl / 3):
            if time.monotonic() - lease.last_progress > self.work_timeout:
                log.error(
                    "no progress on %s for %.0f s: letting its lock lapse so another worker can take over",
                    source_key, self.work_timeout,
                )
                lease.lost = True
                return
            try:
                await lock.reacquire()
            except LockError:
                log.warning("the lock on %s was lost (Redis restarted or flushed?); stopping after the current event", source_key)
                lease.lost = True
                return
            except REDIS_DOWN as error:
                self.health.failed(error)
                if time.monotonic() - renewed_at >= self.lock_ttl:
                    lease.lost = True  # it has lapsed by now: another worker may hold it
                    return
                continue
            renewed_at = time.monotonic()
            self.health.succeeded()

    @asynccontextmanager
    async def hold_many(self, source_keys: list[str]) -> AsyncIterator[dict[str, Lease]]:
        """`hold` for a batch of distinct sources: their locks taken in one round trip,
        renewed together by one task while the batch makes progress, released in one
        script. Yields a lease for each source whose lock was taken; the others are busy
        (another worker holds them and looks for new events when it lets go).
        Raises QueueUnavailable when Redis is down (nothing held)."""
        token = uuid.uuid4().hex
        ttl_ms = int(self.lock_ttl * 1000)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in source_keys:
                pipe.set(self.lock_prefix + key, token, nx=True, px=ttl_ms)
            taken = await pipe.execute()
        except REDIS_DOWN as error:
            self.health.failed(error)
            raise QueueUnavailable(str(error)) from error
        leases = {key: Lease() for key, ok in zip(source_keys, taken) if ok}
        if not leases:
            yield leases
            return
        released = asyncio.Event()
        renewer = asyncio.create_task(self._renew_many(leases, token, released), name="kizuna-lease-batch")
        try:
            yield leases
        finally:
            # Told to stop, never cancelled (see `hold`).
            released.set()
            await asyncio.wait([renewer], timeout=self.lock_ttl)
            try:
                lapsed = await self._release_all(keys=[self.lock_prefix + key for key in leases], args=[token])
            except REDIS_DOWN as error:
                self.health.failed(error)  # they lapse on their own within a TTL
            else:
                if lapsed and not any(lease.lost for lease in leases.values()):
                    log.warning("%d lock(s) of a batch lapsed while they were held", lapsed)

    async def _renew_many(self, leases: dict[str, Lease], token: str, released: asyncio.Event) -> None:
        """`_renew` for a batch: the leases progress together (one batch of events)."""
        renewed_at = time.monotonic()
        while not await _wait(released, self.lock_ttl / 3):
            held = [key for key, lease in leases.items() if not lease.lost]
            if not held:
                return
            if time.monotonic() - max(leases[key].last_progress for key in held) > self.work_timeout:
                log.error(
                    "no progress on %d source(s) for %.0f s: letting their locks lapse so another worker can take over",
                    len(held), self.work_timeout,
                )
                for key in held:
                    leases[key].lost = True
                return
            try:
                flags = await self._renew_all(keys=[self.lock_prefix + key for key in held], args=[token, int(self.lock_ttl * 1000)])
            except REDIS_DOWN as error:
                self.health.failed(error)
                if time.monotonic() - renewed_at >= self.lock_ttl:
                    for key in held:
                        leases[key].lost = True  # lapsed by now: another worker may hold them
                    return
                continue
            for key, flag in zip(held, flags):
                if not flag:
                    log.warning("the lock on %s was lost (Redis restarted or flushed?); stopping after the current event", key)
                    leases[key].lost = True
            renewed_at = time.monotonic()
            self.health.succeeded()

    async def done_many(self, jobs: list[Job]) -> None:
        """`done` for several jobs: one XDEL. Never raises."""
        entry_ids = [job.entry_id for job in jobs if job.entry_id is not None]
        if not entry_ids:
            return
        try:
            await self.redis.xdel(self.stream, *entry_ids)
        except REDIS_DOWN as error:
            self.health.failed(error)

    async def done(self, job: Job) -> None:
        """Delete the entry, so the stream holds only work not yet taken. Best effort:
        a leftover entry only makes a worker look at a source with nothing pending."""
        if job.entry_id is None:
            return
        try:
            await self.redis.xdel(self.stream, job.entry_id)
        except REDIS_DOWN as error:
            self.health.failed(error)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` passes; whether it is set."""
    if not event.is_set() and timeout > 0:
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
    return event.is_set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
