"""Live updates: what one process publishes reaches subscribers in another (Redis), and
a Redis outage ends with a reload notice instead of silently missed updates."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from redis.asyncio import Redis

from kizuna.storage.broadcast import RELOAD, InProcessBroadcaster, RedisBroadcaster
from tests.services import redis_server


async def _next(updates, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        return await anext(updates)


async def test_in_process_fan_out_reaches_every_subscriber():
    broadcaster = InProcessBroadcaster()
    async with broadcaster.subscribe() as first, broadcaster.subscribe() as second:
        await broadcaster.publish({"type": "message", "conversation_id": 1})
        assert await _next(first) == await _next(second) == {"type": "message", "conversation_id": 1}


async def test_a_subscriber_that_falls_behind_is_told_to_reload():
    broadcaster = InProcessBroadcaster()
    async with broadcaster.subscribe() as updates:
        for number in range(1000):
            await broadcaster.publish({"type": "message", "n": number})
        assert await _next(updates) == RELOAD


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_redis_carries_updates_between_processes_and_survives_a_restart():
    async with redis_server() as server:
        publisher_client, subscriber_client = Redis.from_url(server.url), Redis.from_url(server.url)
        # Two broadcasters on two clients: two processes as far as Redis can tell.
        publisher, subscriber = RedisBroadcaster(publisher_client, "t"), RedisBroadcaster(subscriber_client, "t")
        try:
            async with subscriber.subscribe() as updates:
                async def delivered(update: dict) -> dict:
                    # Published until the subscription is in place (it starts in the background).
                    while True:
                        await publisher.publish(update)
                        try:
                            return await _next(updates, timeout=0.2)
                        except TimeoutError:
                            continue

                assert await delivered({"type": "conversation", "id": 7}) == {"type": "conversation", "id": 7}

                await asyncio.to_thread(server.kill)
                await publisher.publish({"type": "lost"})  # nobody hears it: Redis is gone
                await asyncio.to_thread(server.start)
                assert await _next(updates, timeout=15) == RELOAD
                assert await delivered({"type": "conversation", "id": 8}) == {"type": "conversation", "id": 8}
        finally:
            await subscriber.close()
            await publisher_client.aclose()
            await subscriber_client.aclose()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_updates_published_together_reach_subscribers_one_by_one_in_order():
    """A worker's batch publishes its events' updates in one PUBLISH; a console in another
    process still sees each update on its own, in the order published."""
    async with redis_server() as server:
        publisher_client, subscriber_client = Redis.from_url(server.url), Redis.from_url(server.url)
        publisher, subscriber = RedisBroadcaster(publisher_client, "t"), RedisBroadcaster(subscriber_client, "t")
        try:
            async with subscriber.subscribe() as updates:
                while True:  # until the subscription is in place (it starts in the background)
                    await publisher.publish({"type": "probe"})
                    try:
                        assert await _next(updates, timeout=0.2) == {"type": "probe"}
                        break
                    except TimeoutError:
                        continue
                batch = [{"type": "message", "conversation_id": n} for n in range(3)]
                await publisher.publish_many(batch)
                received = []
                while len(received) < len(batch):
                    update = await _next(updates)
                    if update != {"type": "probe"}:  # a late probe
                        received.append(update)
                assert received == batch
        finally:
            await subscriber.close()
            await publisher_client.aclose()
            await subscriber_client.aclose()
