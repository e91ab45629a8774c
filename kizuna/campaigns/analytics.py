"""The figures of the console's 分析 page, each one set-based query (GROUP BY in the database,
never a loop per customer or per day):

- friends added and blocked per day: the follow / unfollow events LINE sent (`inbound_events`,
  read through its (status, received_at) index), so a friend who blocked and came back counts
  on each day they did — `customers` keeps only the latest of each;
- registrations per day (`customers.registered_at`);
- the RFM grid: R × F counts of the customers who bought (R from `last_order_at` as of now, as
  segments compute it; F as kept in `customer_metrics`);
- sales by spend decile (`customer_metrics`: lifetime spend, as the deciles are ranked);
- F2 conversion by the month of the first order: of the customers whose first order fell in a
  month, the share with a second order by now;
- repeat rate per month: of the customers who ordered in a month, the share for whom it was not
  the first order.

Days and months are the shop's (its time zone): a day's bucket is 24 hours from local midnight,
which is exact for Japan (no daylight saving time); months are bounded by their local first days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.storage import customer_metrics, friend_sources
from kizuna.storage.models import Customer, CustomerMetrics, InboundEvent, Order, OrderStatus
from kizuna.storage.types import UTCDateTime

DAY = timedelta(days=1)
LIVE_EVENTS = ("pending", "done")  # parked: invalid on arrival (or never processed), not counted


@dataclass(frozen=True)
class Daily:
    day: date
    values: tuple[int, ...]


@dataclass(frozen=True)
class Monthly:
    month: date  # its first day
    total: int
    hits: int  # of them, the ones the figure is about (F2, repeat)

    @property
    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None


@dataclass(frozen=True)
class DecileSales:
    decile: int
    customers: int
    sales: int


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _day_index(dialect: str, column, start: datetime):
    """Whole days from `start` to `column` (both moments; column ≥ start)."""
    bound = sa.literal(start, UTCDateTime)
    if dialect == "postgresql":
        return sa.func.floor(sa.extract("epoch", column - bound) / 86400)
    return sa.cast(sa.func.julianday(column) - sa.func.julianday(bound), sa.Integer)


def _days(now: datetime, days: int, zone: ZoneInfo) -> tuple[list[date], datetime]:
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    return [first + timedelta(days=n) for n in range(days)], _local_midnight(first, zone)


async def friends_per_day(session: AsyncSession, *, now: datetime, days: int, zone: ZoneInfo) -> list[Daily]:
    """(follows, blocks) per day of the last `days` days, today included."""
    labels, start = _days(now, days, zone)
    events = InboundEvent.__table__
    index = _day_index(session.bind.dialect.name, events.c.received_at, start).label("day")
    rows = (await session.execute(
        sa.select(index, sa.func.count().filter(events.c.event_type == "follow"),
                  sa.func.count().filter(events.c.event_type == "unfollow"))
        .where(events.c.status.in_(LIVE_EVENTS), events.c.received_at >= start, events.c.received_at <= now,
               events.c.event_type.in_(("follow", "unfollow")))
        .group_by(index)
    )).all()
    found = {int(row[0]): (row[1], row[2]) for row in rows}
    return [Daily(day, found.get(n, (0, 0))) for n, day in enumerate(labels)]


async def registrations_per_day(session: AsyncSession, *, now: datetime, days: int, zone: ZoneInfo) -> list[Daily]:
    labels, start = _days(now, days, zone)
    customers = Customer.__table__
    index = _day_index(session.bind.dialect.name, customers.c.registered_at, start).label("day")
    rows = (await session.execute(
        sa.select(index, sa.func.count())
        .where(customers.c.registered.is_(True), customers.c.merged_into_id.is_(None),
               customers.c.registered_at >= start, customers.c.registered_at <= now)
        .group_by(index)
    )).all()
    found = {int(row[0]): row[1] for row in rows}
    return [Daily(day, (found.get(n, 0),)) for n, day in enumerate(labels)]


async def rfm_grid(session: AsyncSession, *, now: datetime) -> dict[tuple[int, int], int]:
    """{(R, F): customers} over everyone who bought (scores 1-5; missing cells are 0)."""
    rules = await customer_metrics.load_rules(session)
    metrics = CustomerMetrics.__table__
    # R as segments compute it: score s holds recency days ≤ its upper bound, i.e. last_order_at
    # later than now − (bound + 1) days.
    whens = [(metrics.c.last_order_at > now - (customer_metrics.r_score_days(score, rules)[1] + 1) * DAY, score)
             for score in (5, 4, 3, 2)]
    r_score = sa.case(*whens, else_=1).label("r")
    rows = (await session.execute(
        sa.select(r_score, metrics.c.rfm_f, sa.func.count())
        .where(metrics.c.frequency > 0, metrics.c.last_order_at.is_not(None), metrics.c.rfm_f.is_not(None))
        .group_by(r_score, metrics.c.rfm_f)
    )).all()
    return {(int(r), int(f)): count for r, f, count in rows}


async def sales_by_decile(session: AsyncSession) -> list[DecileSales]:
    metrics = CustomerMetrics.__table__
    # int(): PostgreSQL's SUM of a bigint is a numeric (a Decimal here), which JSON and the charts do not take.
    rows = dict((decile, (count, int(sales))) for decile, count, sales in (await session.execute(
        sa.select(metrics.c.decile, sa.func.count(), sa.func.coalesce(sa.func.sum(metrics.c.monetary), 0))
        .where(metrics.c.decile.is_not(None)).group_by(metrics.c.decile)
    )).all())
    return [DecileSales(decile, *rows.get(decile, (0, 0))) for decile in range(1, 11)]


def _months(now: datetime, months: int, zone: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """The last `months` months (this one included): (first day, start, end) with local bounds."""
    today = now.astimezone(zone).date()
    year, month = today.year, today.month
    firsts = []
    for _ in range(months):
        firsts.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    firsts.reverse()
    bounds = []
    for first in firsts:
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        bounds.append((first, _local_midnight(first, zone), _local_midnight(following, zone)))
    return bounds


def _month_bucket(column, months: list[tuple[date, datetime, datetime]]):
    return sa.case(*[((column >= start) & (column < end), index) for index, (_first, start, end) in enumerate(months)],
                   else_=None)


async def f2_by_first_month(session: AsyncSession, *, now: datetime, months: int, zone: ZoneInfo) -> list[Monthly]:
    bounds = _months(now, months, zone)
    metrics = CustomerMetrics.__table__
    bucket = _month_bucket(metrics.c.first_order_at, bounds).label("month")
    rows = (await session.execute(
        sa.select(bucket, sa.func.count(), sa.func.count().filter(metrics.c.f2.is_(True)))
        .where(metrics.c.frequency > 0, metrics.c.first_order_at >= bounds[0][1], metrics.c.first_order_at < bounds[-1][2])
        .group_by(bucket)
    )).all()
    found = {int(row[0]): (row[1], row[2]) for row in rows if row[0] is not None}
    return [Monthly(first, *found.get(index, (0, 0))) for index, (first, _s, _e) in enumerate(bounds)]


async def repeat_rate_by_month(session: AsyncSession, *, now: datetime, months: int, zone: ZoneInfo) -> list[Monthly]:
    bounds = _months(now, months, zone)
    orders, metrics = Order.__table__, CustomerMetrics.__table__
    bucket = _month_bucket(orders.c.ordered_at, bounds).label("month")
    repeat = sa.case((orders.c.ordered_at > metrics.c.first_order_at, orders.c.customer_id), else_=None)
    rows = (await session.execute(
        sa.select(bucket, sa.func.count(sa.distinct(orders.c.customer_id)), sa.func.count(sa.distinct(repeat)))
        .select_from(orders.join(metrics, metrics.c.customer_id == orders.c.customer_id))
        .where(orders.c.status == OrderStatus.COMPLETED.value, orders.c.ordered_at >= bounds[0][1],
               orders.c.ordered_at < bounds[-1][2])
        .group_by(bucket)
    )).all()
    found = {int(row[0]): (row[1], row[2]) for row in rows if row[0] is not None}
    return [Monthly(first, *found.get(index, (0, 0))) for index, (first, _s, _e) in enumerate(bounds)]


@dataclass(frozen=True)
class SourceFollows:
    name: str
    follows: int
    blocks: int


async def follows_per_source(session: AsyncSession) -> list[SourceFollows]:
    """Follows and blocks per friend-add source (流入経路), the sources not archived, oldest first:
    storage/friend_sources.py's one GROUP BY (first source wins; blocks are the attributed
    customers who block the account now)."""
    rows = await friend_sources.stats(session, include_archived=False)
    return [SourceFollows(row.source.name, row.follows, row.blocks) for row in reversed(rows)]
