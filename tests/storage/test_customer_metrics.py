"""Customer metrics kept by the order upsert: aggregates after orders (a re-sent and a cancelled
order included), recency computed at read time, RFM scores and spend deciles on a small
population, LTV by the documented formula, and settings overrides. Real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.storage import customer_metrics, orders
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.models import CustomerMetrics, MetricSettings, OrderCreate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def order(external_id: str, email: str, total: int, *, days_ago: float, status: str = "completed") -> OrderCreate:
    return OrderCreate.model_validate({
        "external_id": external_id, "ordered_at": (NOW - timedelta(days=days_ago)).isoformat(), "total": total,
        "email": email, "status": status, "items": [{"sku": "SH-01", "category": "ヘアケア", "unit_price": total}],
    })


async def upsert(sessions, *batch: OrderCreate, now: datetime = NOW) -> None:
    async with transaction(sessions) as session:
        await orders.upsert(session, list(batch), now=now, source="test")


async def metrics(sessions) -> dict[int, CustomerMetrics]:
    async with sessions() as session:
        return {row.customer_id: row for row in (await session.execute(sa.select(CustomerMetrics))).scalars()}


async def test_orders_keep_the_metrics_current(sessions):
    await upsert(sessions, order("A-1", "a@example.com", 3000, days_ago=400), order("A-2", "a@example.com", 5000, days_ago=10))
    [row] = (await metrics(sessions)).values()
    assert (row.frequency, row.monetary, row.average_order_value, row.f2) == (2, 8000, 4000, True)
    assert row.first_order_at == NOW - timedelta(days=400) and row.last_order_at == NOW - timedelta(days=10)
    assert (row.rfm_f, row.rfm_m) == (2, 1)
    # LTV: monetary / max(1, years between first and last order) × margin 0.3 × 3 years.
    assert row.ltv == round(8000 * 365 / 390 * 0.3 * 3)

    # A re-sent order changes nothing; the same order cancelled leaves the counts.
    await upsert(sessions, order("A-2", "a@example.com", 5000, days_ago=10))
    assert (await metrics(sessions))[row.customer_id].frequency == 2
    await upsert(sessions, order("A-2", "a@example.com", 5000, days_ago=10, status="cancelled"))
    row = (await metrics(sessions))[row.customer_id]
    assert (row.frequency, row.monetary, row.f2, row.last_order_at) == (1, 3000, False, NOW - timedelta(days=400))
    await upsert(sessions, order("A-1", "a@example.com", 3000, days_ago=400, status="returned"))
    row = (await metrics(sessions))[row.customer_id]
    assert (row.frequency, row.monetary, row.last_order_at, row.rfm_f, row.decile) == (0, 0, None, None, None)


async def test_recency_is_computed_when_read_never_stored(sessions):
    await upsert(sessions, order("R-1", "r@example.com", 1000, days_ago=30.5))
    [row] = (await metrics(sessions)).values()
    async with sessions() as session:
        seen = await customer_metrics.read(session, [row.customer_id], now=NOW)
        later = await customer_metrics.read(session, [row.customer_id], now=NOW + timedelta(days=31))
    assert (seen[row.customer_id].recency_days, seen[row.customer_id].rfm_r) == (30, 5)
    assert (later[row.customer_id].recency_days, later[row.customer_id].rfm_r) == (61, 3)
    assert customer_metrics.recency_days(NOW - timedelta(hours=23, minutes=59), NOW) == 0
    assert customer_metrics.recency_days(NOW - timedelta(hours=24), NOW) == 1


async def test_rfm_scores_and_deciles_on_a_small_population(sessions):
    # Twenty customers: customer i spends (i + 1) × 6,000 yen over i % 6 + 1 orders.
    batch = []
    for i in range(20):
        count = i % 6 + 1
        batch += [order(f"P-{i}-{n}", f"p{i}@example.com", (i + 1) * 6000 // count, days_ago=n * 20) for n in range(count)]
    await upsert(sessions, *batch)
    async with transaction(sessions) as session:
        await customer_metrics.refresh_population(session)
    rows = sorted((await metrics(sessions)).values(), key=lambda row: -row.monetary)
    assert [row.decile for row in rows] == [d for d in range(1, 11) for _ in range(2)]
    by_spend = {row.monetary: row for row in rows}
    top = rows[0]
    assert top.rfm_m == 5 and top.monetary >= 100_000
    assert by_spend[min(by_spend)].rfm_m == 1
    assert {(row.frequency, row.rfm_f) for row in rows} == {(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (6, 4)}


async def test_settings_override_the_defaults_and_rescore(sessions):
    await upsert(sessions, order("S-1", "s@example.com", 12000, days_ago=1))
    async with transaction(sessions) as session:
        await customer_metrics.set_rules(session, {"monetary_yen": [5000, 10000, 20000, 40000], "gross_margin": 0.5}, now=NOW)
        assert await customer_metrics.rescoring(session)
    [row] = (await metrics(sessions)).values()
    assert (row.rfm_m, row.ltv) == (2, round(12000 * 0.3 * 3))  # the request itself rescored nobody
    assert await customer_metrics.rescore_if_requested(sessions, now=NOW)
    [row] = (await metrics(sessions)).values()
    assert (row.rfm_m, row.ltv) == (3, round(12000 * 0.5 * 3))
    assert not await customer_metrics.rescore_if_requested(sessions, now=NOW)  # done: nothing more asked
    async with sessions() as session:
        assert not await customer_metrics.rescoring(session)
    with pytest.raises(Invalid, match="ascending"):
        customer_metrics.check_rules({"recency_days": [30, 20, 90, 180]})
    with pytest.raises(Invalid) as error:
        customer_metrics.check_rules({"margin": 0.3})
    assert error.value.field == "margin"


async def test_a_rescore_is_run_by_one_worker_and_taken_over_when_its_lease_ends(sessions):
    await upsert(sessions, order("S-1", "s@example.com", 12000, days_ago=1), order("S-2", "t@example.com", 60000, days_ago=1))
    async with transaction(sessions) as session:
        await customer_metrics.set_rules(session, {"monetary_yen": [5000, 10000, 20000, 40000]}, now=NOW)
    table = MetricSettings.__table__
    async with transaction(sessions) as session:  # a worker has taken it on: another does not
        await session.execute(sa.update(table).values(rescore_claimed_at=NOW))
    assert not await customer_metrics.rescore_if_requested(sessions, now=NOW + timedelta(minutes=1))
    # ... until its lease runs out (it died); the newest settings are the ones applied
    async with transaction(sessions) as session:
        await customer_metrics.set_rules(session, {"monetary_yen": [1000, 2000, 3000, 50000]}, now=NOW + timedelta(minutes=2))
    later = NOW + customer_metrics.RESCORE_LEASE + timedelta(minutes=1)
    assert await customer_metrics.rescore_if_requested(sessions, now=later)
    assert sorted(row.rfm_m for row in (await metrics(sessions)).values()) == [4, 5]
    async with sessions() as session:
        assert not await customer_metrics.rescoring(session)


async def test_refresh_all_rebuilds_from_the_orders(sessions):
    await upsert(sessions, order("F-1", "f@example.com", 2000, days_ago=3), order("F-2", "g@example.com", 9000, days_ago=3))
    async with transaction(sessions) as session:
        await session.execute(sa.delete(CustomerMetrics))
        await customer_metrics.refresh_all(session, now=NOW)
    rows = await metrics(sessions)
    assert sorted((row.monetary, row.decile) for row in rows.values()) == [(2000, 2), (9000, 1)]


async def test_the_scheduled_decile_refresh_runs_once_per_interval(sessions):
    await upsert(sessions, order("Q-1", "q@example.com", 2000, days_ago=3))
    every = timedelta(hours=1)

    async def due(now: datetime) -> bool:
        async with transaction(sessions) as session:
            return await customer_metrics.refresh_population_if_due(session, now=now, every=every)

    assert await due(NOW) is True
    assert [row.decile for row in (await metrics(sessions)).values()] == [1]
    assert await due(NOW + timedelta(minutes=59)) is False
    assert await due(NOW + timedelta(hours=1)) is True
