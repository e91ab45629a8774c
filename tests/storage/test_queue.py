"""The Redis work queue against a real Redis: source locks that cannot outlive their work."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from redis.asyncio import Redis

from kizuna.storage.queue import Job, RedisQueue
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.skipif(TEST_REDIS_URL is None, reason="needs KIZUNA_TEST_REDIS_URL")


@pytest.fixture
async def redis(redis_prefix, redis_cleanup):
    client = Redis.from_url(TEST_REDIS_URL)
    yield client
    await client.aclose()


async def test_a_released_source_is_free_at_once_even_when_released_mid_refresh(redis, redis_prefix):
    """The stuck-customer bug: leaving `hold` cancelled the lock's refresher, and when the
    cancellation landed while the refresher was inside a Redis command, redis-py (through
    Python 3.11's asyncio.wait_for) swallowed it: the refresher kept renewing the lock
    forever and `hold` never returned. The customer's events then stayed pending for good.
    Here the refresh runs every few milliseconds so that releases land mid-command often."""
    queue = RedisQueue(redis, redis_prefix, lock_ttl=0.02)
    other = RedisQueue(redis, redis_prefix, lock_ttl=5)
    for round_ in range(60):
        job = Job(source_key=f"U{round_:032x}")
        async with asyncio.timeout(2):  # a release that waits on the refresher hangs here
            async with queue.hold(job):
                await asyncio.sleep(random.uniform(0, 0.02))
        # Free for another worker right away, not after a lock TTL.
        async with asyncio.timeout(2):
            async with other.hold(job):
                pass


async def test_a_holder_that_stops_working_loses_the_source(redis, redis_prefix):
    """A lock's holder must be alive and working: one that makes no progress for
    `work_timeout` stops refreshing, the lock lapses, and another worker takes the source."""
    stuck = RedisQueue(redis, redis_prefix, lock_ttl=0.3, work_timeout=0.5)
    other = RedisQueue(redis, redis_prefix, lock_ttl=5)
    job = Job(source_key="U" + uuid.uuid4().hex)
    held, taken = asyncio.Event(), asyncio.Event()

    async def hang_while_holding() -> None:
        async with stuck.hold(job) as lease:
            held.set()
            await taken.wait()  # never touches the lease: no progress
            assert lease.lost

    holder = asyncio.create_task(hang_while_holding())
    async with asyncio.timeout(3):
        await held.wait()

    async def take_over() -> None:
        while True:
            try:
                async with other.hold(job):
                    taken.set()
                    return
            except Exception:
                await asyncio.sleep(0.05)

    async with asyncio.timeout(3):
        await take_over()
        await holder


async def test_a_batch_holds_the_free_sources_and_lets_them_all_go_at_once(redis, redis_prefix):
    """A worker's batch takes the sources nobody holds, leaves a busy one to its holder, and
    releases them all when it ends: another worker can take each at once."""
    queue = RedisQueue(redis, redis_prefix, lock_ttl=5)
    other = RedisQueue(redis, redis_prefix, lock_ttl=5)
    sources = ["U" + uuid.uuid4().hex for _ in range(5)]
    async with other.hold(Job(source_key=sources[2])):
        async with queue.hold_many(sources) as leases:
            assert sorted(leases) == sorted(sources[:2] + sources[3:])
            async with other.hold_many(sources) as others:
                assert others == {}  # all held: by the batch, or by `other` itself
    async with asyncio.timeout(2):
        async with other.hold_many(sources) as leases:
            assert sorted(leases) == sorted(sources)


async def test_a_batch_notices_a_lock_it_lost_and_keeps_the_others(redis, redis_prefix):
    """Redis flushed one lock (or it lapsed and another worker took it): the renewal marks
    that source's lease lost, and the batch's other locks stay held and renewed."""
    queue = RedisQueue(redis, redis_prefix, lock_ttl=0.3)
    other = RedisQueue(redis, redis_prefix, lock_ttl=5)
    sources = ["U" + uuid.uuid4().hex for _ in range(3)]
    async with queue.hold_many(sources) as leases:
        await redis.delete(queue.lock_prefix + sources[1])
        async with other.hold_many([sources[1]]) as taken:
            assert list(taken) == [sources[1]]
            deadline = asyncio.get_running_loop().time() + 3
            while not leases[sources[1]].lost:
                for lease in leases.values():
                    lease.touch()
                assert asyncio.get_running_loop().time() < deadline, "the lost lock was never noticed"
                await asyncio.sleep(0.02)
        # Several TTLs later the others are still this batch's.
        assert not leases[sources[0]].lost and not leases[sources[2]].lost
        async with other.hold_many([sources[0], sources[2]]) as refused:
            assert refused == {}


async def test_a_batch_that_stops_working_loses_its_sources(redis, redis_prefix):
    """As for one source: a batch that makes no progress for `work_timeout` stops renewing,
    its locks lapse, and another worker takes the sources."""
    stuck = RedisQueue(redis, redis_prefix, lock_ttl=0.3, work_timeout=0.5)
    other = RedisQueue(redis, redis_prefix, lock_ttl=5)
    sources = ["U" + uuid.uuid4().hex for _ in range(3)]
    async with stuck.hold_many(sources) as leases:
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            async with other.hold_many(sources) as taken:
                if len(taken) == len(sources):
                    break
            assert asyncio.get_running_loop().time() < deadline, "the stuck batch kept its sources"
            await asyncio.sleep(0.05)
        assert all(lease.lost for lease in leases.values())


async def test_a_stopping_worker_gives_its_blocked_read_up(redis, redis_prefix):
    """A consumer blocked on an empty stream returns as soon as the queue is woken for a stop,
    not when its read's block ends (here 5 s); the client's other connections work on."""
    queue = RedisQueue(redis, redis_prefix)
    queue.READ_BLOCK_MS = 5000
    reading = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # (the read is under way; this is not a wait for work)
    queue.wake(1)
    async with asyncio.timeout(2):
        assert await reading is None
    await queue.put(["Uafter"])
    assert await redis.xlen(queue.stream) == 1
