"""Customers chatting with the bot while faults happen, and the checks that nothing was
lost or doubled. Used by the chaos tests (tests/bot/test_chaos.py) and, longer, by
bench/chaos.py.

Each customer sends numbered text messages one after another. A message that gets no
200 (the server was killed, the database was down) is redelivered - same
webhookEventId, same reply token - until it gets one, as LINE does for a channel with
redelivery on. So at the end every message was acknowledged at least once, and the
system must have processed each exactly once and answered each exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from kizuna.emulator import Emulator
from kizuna.storage.db import create_engine
from kizuna.storage.models import Delivery, InboundEvent, Interaction


@dataclass
class ChatLoad:
    emulator: Emulator
    customers: int
    messages_each: int
    # Pause between one customer's messages, and before redelivering a message.
    gap: float = 0.05
    redelivery_gap: float = 0.2
    acked: dict[str, dict] = field(default_factory=dict)  # webhookEventId -> event
    # Per customer, when each message was first acknowledged (the emulator's clock).
    acked_at: dict[str, list[float]] = field(default_factory=dict)
    refused: collections.Counter = field(default_factory=collections.Counter)  # status (0: no answer) -> count
    user_ids: list[str] = field(default_factory=list)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def total(self) -> int:
        return self.customers * self.messages_each

    async def run(self) -> None:
        users = [self.emulator.add_user(display_name=f"お客様{index}") for index in range(self.customers)]
        self.user_ids = [user.user_id for user in users]
        await asyncio.gather(*(self._chat(user.user_id) for user in users))

    async def _chat(self, user_id: str) -> None:
        for number in range(1, self.messages_each + 1):
            result = await self.emulator.send_text(user_id, f"届いていますか {number}")
            event = result.event
            while result.status != 200:
                self.refused[result.status] += 1
                await asyncio.sleep(self.redelivery_gap)
                result = await self.emulator.redeliver(event)
            self.acked[event["webhookEventId"]] = event
            self.acked_at.setdefault(user_id, []).append(self.emulator.clock())
            async with self._progress:
                self._progress.notify_all()
            await asyncio.sleep(self.gap)

    async def acknowledged(self, count: int, timeout: float = 60) -> None:
        """Wait until `count` messages have been acknowledged (the moment for a fault)."""
        async with asyncio.timeout(timeout):
            async with self._progress:
                await self._progress.wait_for(lambda: len(self.acked) >= count)


@dataclass
class Outcome:
    seconds_to_settle: float  # from the end of the fault until every message was answered
    refused: dict
    stored: int
    replies: int
    # Seconds from a message's acknowledgement to its answer reaching LINE: p50, p99, max.
    answer_seconds: tuple[float, float, float]


async def settle_and_check(load: ChatLoad, database_url: str, *, fault_ended: float, timeout: float) -> Outcome:
    """Wait until every acknowledged message is processed and every delivery finished,
    then check: each event stored once and processed once (one inbound row on the
    timeline), none parked, and each customer got exactly one answer per message."""
    engine = create_engine(database_url, pool_size=2)
    try:
        deadline = time.monotonic() + timeout
        while True:
            state = await _state(engine)
            answered = all(len(load.emulator.messages_to(user_id)) >= load.messages_each for user_id in load.user_ids)
            if answered and state["unfinished"] == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled {timeout:.0f} s after the fault: {state}, answered customers "
                    f"{sum(len(load.emulator.messages_to(u)) >= load.messages_each for u in load.user_ids)}/{load.customers}"
                )
            await asyncio.sleep(0.1)
        settled = time.monotonic() - fault_ended

        async with engine.connect() as connection:
            rows = (await connection.execute(sa.select(InboundEvent.webhook_event_id, InboundEvent.status))).all()
            inbound = (await connection.execute(
                sa.select(InboundEvent.webhook_event_id, sa.func.count(Interaction.id))
                .join(Interaction, Interaction.inbound_event_id == InboundEvent.id)
                .where(Interaction.direction == "in")
                .group_by(InboundEvent.webhook_event_id)
            )).all()
    finally:
        await engine.dispose()

    stored = collections.Counter(webhook_event_id for webhook_event_id, _ in rows)
    assert set(stored) == set(load.acked), "stored events differ from the acknowledged ones"
    assert all(count == 1 for count in stored.values())
    statuses = collections.Counter(status for _, status in rows)
    assert statuses == {"done": load.total}, f"events not all done exactly once: {statuses}"
    per_event = dict(inbound)
    assert set(per_event) == set(load.acked) and set(per_event.values()) == {1}, "an event was processed more than once"
    replies = {user_id: len(load.emulator.messages_to(user_id)) for user_id in load.user_ids}
    doubled = {user_id: count for user_id, count in replies.items() if count != load.messages_each}
    assert not doubled, f"customers who got more answers than they sent messages: {doubled}"
    return Outcome(
        seconds_to_settle=settled, refused=dict(load.refused), stored=len(stored), replies=sum(replies.values()),
        answer_seconds=_answer_seconds(load),
    )


def _answer_seconds(load: ChatLoad) -> tuple[float, float, float]:
    """A customer's messages are answered in order, one answer each: the n-th answer is
    the n-th message's."""
    waits = sorted(
        answer.at - acked
        for user_id in load.user_ids
        for acked, answer in zip(load.acked_at[user_id], load.emulator.messages_to(user_id))
    )
    return waits[len(waits) // 2], waits[min(len(waits) - 1, int(len(waits) * 0.99))], waits[-1]


async def _state(engine) -> dict:
    async with engine.connect() as connection:
        events = dict((await connection.execute(
            sa.select(InboundEvent.status, sa.func.count()).group_by(InboundEvent.status)
        )).all())
        deliveries = dict((await connection.execute(
            sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)
        )).all())
    unfinished = events.get("pending", 0) + deliveries.get("pending", 0) + deliveries.get("sending", 0)
    return {"events": events, "deliveries": deliveries, "unfinished": unfinished}
