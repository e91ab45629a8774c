"""The analytics figures (campaigns/analytics.py) on a small shop with a known answer, on the real
database (SQLite, or PostgreSQL with KIZUNA_TEST_DATABASE_URL): days and months in the shop's
time zone (an event at local midnight is that day's), parked events and merged customers left
out, the RFM grid as segments score R, deciles, F2 by first month, repeat rate by month."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kizuna.campaigns import analytics, segments
from kizuna.storage import customer_metrics, orders
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Customer, InboundEvent, OrderCreate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)  # 21:00 on 6 December in Tokyo
TOKYO = ZoneInfo("Asia/Tokyo")
DAY = timedelta(days=1)
MIDNIGHT = datetime(2026, 12, 5, 15, 0, tzinfo=timezone.utc)  # 6 December 00:00 in Tokyo


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def event(number: int, kind: str, at: datetime, status: str = "done") -> InboundEvent:
    return InboundEvent(webhook_event_id=f"E{number}", event_type=kind, source_key=f"user:U{number}", line_user_id=None,
                        event_timestamp=int(at.timestamp() * 1000), payload={"type": kind}, status=status, received_at=at)


def order(external_id: str, email: str, total: int, days_ago: float, status: str = "completed") -> OrderCreate:
    return OrderCreate.model_validate({"external_id": external_id, "ordered_at": (NOW - days_ago * DAY).isoformat(),
                                       "total": total, "email": email, "status": status})


@pytest.fixture
async def shop(sessions):
    async with transaction(sessions) as session:
        session.add_all([
            event(1, "follow", NOW - 0.1 * DAY), event(2, "follow", MIDNIGHT), event(3, "unfollow", MIDNIGHT),
            event(4, "follow", MIDNIGHT - timedelta(seconds=1)), event(5, "unfollow", NOW - DAY),
            event(6, "follow", NOW, status="parked"), event(7, "message", NOW), event(8, "follow", NOW - 40 * DAY),
            event(9, "follow", NOW - 29 * DAY, status="pending"),
        ])
        kept = Customer(registered=True, registered_at=MIDNIGHT)
        session.add_all([kept, Customer(registered=True, registered_at=MIDNIGHT - timedelta(minutes=1)), Customer(registered=False)])
        await session.flush()
        session.add(Customer(registered=True, registered_at=MIDNIGHT, merged_into_id=kept.id))
        await orders.upsert(session, [
            order("A-1", "a@example.com", 5000, 40), order("A-2", "a@example.com", 3000, 5),
            order("B-1", "b@example.com", 2000, 100), order("C-1", "c@example.com", 10000, 3),
            order("D-1", "d@example.com", 9000, 2, status="cancelled"),
        ], now=NOW, source="test")
        await customer_metrics.refresh_population(session)


async def test_friends_and_registrations_per_day_in_shop_time(sessions, shop):
    async with sessions() as session:
        friends = await analytics.friends_per_day(session, now=NOW, days=30, zone=TOKYO)
        registrations = await analytics.registrations_per_day(session, now=NOW, days=30, zone=TOKYO)
    assert len(friends) == 30 and friends[0].day == date(2026, 11, 7) and friends[-1].day == date(2026, 12, 6)
    by_day = {item.day: item.values for item in friends if item.values != (0, 0)}
    assert by_day == {date(2026, 12, 6): (2, 1), date(2026, 12, 5): (1, 1), date(2026, 11, 7): (1, 0)}
    assert {item.day: item.values for item in registrations if item.values != (0,)} == {
        date(2026, 12, 6): (1,), date(2026, 12, 5): (1,)}
    async with sessions() as session:
        longer = await analytics.friends_per_day(session, now=NOW, days=90, zone=TOKYO)
    assert sum(item.values[0] for item in longer) == 5 and len(longer) == 90


async def test_rfm_grid_matches_the_segments(sessions, shop):
    async with sessions() as session:
        grid = await analytics.rfm_grid(session, now=NOW)
        assert grid == {(5, 2): 1, (2, 1): 1, (5, 1): 1}
        for (r, f), count in grid.items():  # a cell's link opens the builder with these two conditions
            rule = {"all": [{"field": "rfm_r", "op": "eq", "value": r}, {"field": "rfm_f", "op": "eq", "value": f}]}
            assert (await segments.preview(session, rule, now=NOW, sample=0)).count == count


async def test_sales_by_decile(sessions, shop):
    async with sessions() as session:
        deciles = await analytics.sales_by_decile(session)
    assert [(item.decile, item.customers, item.sales) for item in deciles[:4]] == [(1, 1, 10000), (2, 1, 8000), (3, 1, 2000), (4, 0, 0)]
    assert len(deciles) == 10
    assert all(type(item.sales) is int for item in deciles)  # (PostgreSQL's SUM is a Decimal: the page's JSON refused it)


async def test_f2_and_repeat_rate_by_month(sessions, shop):
    async with sessions() as session:
        f2 = await analytics.f2_by_first_month(session, now=NOW, months=12, zone=TOKYO)
        repeat = await analytics.repeat_rate_by_month(session, now=NOW, months=12, zone=TOKYO)
    assert f2[0].month == date(2026, 1, 1) and f2[-1].month == date(2026, 12, 1)
    assert {item.month.month: (item.total, item.hits) for item in f2 if item.total} == {8: (1, 0), 10: (1, 1), 12: (1, 0)}
    assert {item.month.month: (item.total, item.hits) for item in repeat if item.total} == {8: (1, 0), 10: (1, 0), 12: (2, 1)}
    assert repeat[-1].rate == 0.5 and repeat[0].rate is None
