"""The console's home page figures: "how are we doing today", in the shop's time zone.

One scan of `customers` (counts with FILTER) and one indexed range of `inbound_events`
(messages received today); the support figures (conversations waiting, the oldest wait)
come from `conversations.waiting()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import conversations
from .coupons import get_shop, zone
from .models import Customer, InboundEvent

EVENT_STATUSES = ("pending", "done", "parked")  # every status, so the (status, received_at) index serves


@dataclass
class SupportFigures:
    """1:1チャット on the home page: conversations waiting for a person and since when the
    longest has waited (`conversations.waiting()`)."""

    waiting: int
    oldest_waiting_since: datetime | None


@dataclass
class Today:
    day_start: datetime  # midnight, shop time (aware)
    friends: int  # following the account now
    friends_today: int  # followed (again) since midnight
    blocked: int
    blocked_today: int
    registered: int
    registered_today: int
    messages_today: int  # messages customers sent since midnight
    recent_friends: list[Customer] = field(default_factory=list)
    # 1:1チャット: conversations waiting and the oldest wait. The home page shows its tiles
    # only when it is set (never a made-up number); `today` always sets it.
    support: SupportFigures | None = None


def start_of_day(now: datetime, timezone_name: str) -> datetime:
    local = now.astimezone(zone(timezone_name))
    return datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)


async def today(session: AsyncSession, *, now: datetime, recent: int = 5) -> Today:
    shop = await get_shop(session)
    start = start_of_day(now, shop.timezone)
    count = sa.func.count
    figures = (await session.execute(sa.select(
        count().filter(Customer.followed.is_(True)),
        count().filter(Customer.followed.is_(True), Customer.followed_at >= start),
        count().filter(Customer.blocked.is_(True)),
        count().filter(Customer.blocked.is_(True), Customer.unfollowed_at >= start),
        count().filter(Customer.registered.is_(True)),
        count().filter(Customer.registered.is_(True), Customer.registered_at >= start),
    ))).one()
    messages = (await session.execute(
        sa.select(count()).select_from(InboundEvent).where(
            InboundEvent.status.in_(EVENT_STATUSES), InboundEvent.received_at >= start, InboundEvent.event_type == "message",
        )
    )).scalar_one()
    recent_friends = list((await session.execute(
        sa.select(Customer).where(Customer.followed.is_(True), Customer.followed_at.is_not(None))
        .order_by(Customer.followed_at.desc()).limit(recent)
    )).scalars())
    waiting, oldest = await conversations.waiting(session)
    return Today(start, *figures, messages_today=messages, recent_friends=recent_friends,
                 support=SupportFigures(waiting=waiting, oldest_waiting_since=oldest))

