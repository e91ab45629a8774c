"""Live updates for people watching (DESIGN.md, "Live updates").

Changes that a person watches - a new message, a conversation taken or resolved - are
published after their transaction commits, on one broadcaster: Redis pub/sub in
production (an event stored by one process reaches a console served by another), an
in-process fan-out in embedded mode. Nothing is lost if nobody listens: the database
stays the truth, and a page load reads it. So publishing is best effort and never
raises, and a subscriber that falls behind is told to reload (`{"type": "reload"}`)
instead of holding the publisher back.

An update is a small JSON object with a `type` ("conversation", "message", ...) and the
ids a listener needs to decide whether to re-read something.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .dependency import Dependency

log = logging.getLogger(__name__)

RELOAD = {"type": "reload"}
# Updates a slow subscriber may have waiting before it is told to reload instead.
SUBSCRIBER_BACKLOG = 256
# How long a new subscriber waits for the process's Redis subscription to be in place.
SUBSCRIBE_WAIT_SECONDS = 2.0


class Broadcaster(Protocol):
    async def publish(self, update: dict) -> None:
        """Best effort, after commit; never raises."""
        ...

    async def publish_many(self, updates: list[dict]) -> None:
        """`publish` for several updates at once (a worker's batch of events); never raises."""
        ...

    def subscribe(self) -> "asyncio.AbstractAsyncContextManager[AsyncIterator[dict]]": ...


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict] = asyncio.Queue(SUBSCRIBER_BACKLOG)

    def offer(self, update: dict) -> None:
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            # Behind: drop what is waiting, ask for a reload (the database has it all).
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RELOAD)

    async def updates(self) -> AsyncIterator[dict]:
        while True:
            yield await self.queue.get()


class InProcessBroadcaster:
    """Embedded mode: one process, so a fan-out to this process's subscribers is all."""

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()

    async def publish(self, update: dict) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(update)

    async def publish_many(self, updates: list[dict]) -> None:
        for update in updates:
            await self.publish(update)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[dict]]:
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        try:
            yield subscriber.updates()
        finally:
            self._subscribers.discard(subscriber)


class RedisBroadcaster:
    """Production: PUBLISH on `<prefix>:live`; each process runs one Redis subscription
    (from its first subscriber until `close`) and fans it out to its subscribers in memory."""

    def __init__(self, redis: Redis, prefix: str, *, health: Dependency | None = None) -> None:
        self.redis = redis
        self.channel = f"{prefix}:live"
        self.health = health or Dependency("Redis")
        self._local = InProcessBroadcaster()
        self._listening: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, update: dict) -> None:
        if not self.health.should_try():
            return
        try:
            await self.redis.publish(self.channel, json.dumps(update, ensure_ascii=False))
        except (RedisError, OSError) as error:
            self.health.failed(error)  # watchers reload when Redis is back
            return
        self.health.succeeded()

    async def publish_many(self, updates: list[dict]) -> None:
        """Several updates in one PUBLISH (a JSON array; a worker's batch of events):
        one Redis round trip and one message for every listening process to parse."""
        if not updates:
            return
        if not self.health.should_try():
            return
        try:
            await self.redis.publish(self.channel, json.dumps(updates, ensure_ascii=False))
        except (RedisError, OSError) as error:
            self.health.failed(error)
            return
        self.health.succeeded()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[dict]]:
        # One subscription per process, kept while the process lives: stopping and starting
        # it per subscriber would cancel Redis reads mid-command, which redis-py does not
        # always honour (it could leave two relays and every update twice).
        if self._listening is None:
            self._listening = asyncio.create_task(self._listen(), name="kizuna-live-updates")
        async with self._local.subscribe() as updates:
            # From here on nothing published is missed (unless Redis is down: then the
            # subscriber gets a reload notice when it is back).
            try:
                async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                    await self._subscribed.wait()
            except TimeoutError:
                pass
            yield updates

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)

    async def _listen(self) -> None:
        """Relay the channel to this process's subscribers, reconnecting after Redis
        outages; after one, subscribers are told to reload (they missed updates)."""
        missed = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                self.health.succeeded()
                if missed:
                    await self._local.publish(RELOAD)
                    missed = False
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        update = json.loads(message["data"])
                    except ValueError:
                        continue
                    # One update, or several published together (`publish_many`).
                    for one in update if isinstance(update, list) else [update]:
                        if isinstance(one, dict):
                            await self._local.publish(one)
            except (RedisError, OSError) as error:
                self._subscribed.clear()
                self.health.failed(error)
                missed = True
                await asyncio.sleep(self.health.backoff())
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
