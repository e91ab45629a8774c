"""The churn model's job (campaigns/churn.py) on the real database (SQLite, or PostgreSQL when
KIZUNA_TEST_DATABASE_URL is set): orders in, BG/NBD + Gamma-Gamma fitted, p_alive / expected
purchases / model LTV written; the fallback when the data cannot give a model; the 離脱予備軍
preset; the daily claim."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.campaigns import churn, segments
from kizuna.campaigns.clv_model import BGNBDModel, GammaGammaModel
from kizuna.storage import customer_metrics, orders
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import CustomerIdentity, CustomerMetrics, OrderCreate

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=timezone.utc)  # 12:00 in Tokyo
DAY = timedelta(days=1)


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def order(external_id: str, email: str, total: int, at: datetime, status: str = "completed") -> OrderCreate:
    return OrderCreate.model_validate({
        "external_id": external_id, "ordered_at": at.isoformat(), "total": total, "email": email, "status": status,
        "items": [{"sku": "SKU-1", "category": "ヘアケア", "unit_price": total}],
    })


async def store(sessions, batch: list[OrderCreate]) -> None:
    for start in range(0, len(batch), 500):
        async with transaction(sessions) as session:
            await orders.upsert(session, batch[start:start + 500], now=NOW, source="test")


def shop(seed: int = 7, *, steady: int = 40, lapsed: int = 40, once: int = 60) -> tuple[list[OrderCreate], dict[str, list[str]]]:
    """Steady customers buy every 10-40 days for a year up to now; lapsed ones bought the same
    way, then stopped 200-300 days ago; the rest bought once. Returns the orders and the e-mails
    of each kind."""
    rng = random.Random(seed)
    batch: list[OrderCreate] = []
    kinds: dict[str, list[str]] = {"steady": [], "lapsed": [], "once": []}
    for kind, count in (("steady", steady), ("lapsed", lapsed), ("once", once)):
        for n in range(count):
            email = f"{kind}{n}@example.com"
            kinds[kind].append(email)
            start = NOW - rng.uniform(360, 420) * DAY
            stop = NOW - rng.uniform(0, 10) * DAY if kind == "steady" else NOW - rng.uniform(200, 260) * DAY
            gap = rng.uniform(10, 40)
            usual = rng.gammavariate(3, 1500) + 1000  # each customer's own typical order (Gamma-Gamma)
            at, k = start, 0
            while at <= stop:
                batch.append(order(f"{kind}-{n}-{k}", email, round(rng.gammavariate(6, usual / 6)) + 1, at))
                k += 1
                if kind == "once":
                    break
                at += rng.uniform(0.5, 1.5) * gap * DAY
    return batch, kinds


async def ids_of(sessions, emails: list[str]) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(sa.select(CustomerIdentity.customer_id).where(
            CustomerIdentity.kind == "email", CustomerIdentity.value.in_(emails)))
        return [row[0] for row in rows]


async def metrics_of(sessions) -> dict[int, CustomerMetrics]:
    async with sessions() as session:
        return {row.customer_id: row for row in (await session.execute(sa.select(CustomerMetrics))).scalars()}


async def test_lapsed_customers_get_a_lower_p_alive_than_steady_ones(sessions):
    batch, kinds = shop()
    await store(sessions, batch)
    status = await churn.refresh_model(sessions, now=NOW)
    assert status.fitted, status.reason
    assert status.customers == 140 and status.repeat_customers == 80
    rows = await metrics_of(sessions)
    steady = [rows[i].p_alive for i in await ids_of(sessions, kinds["steady"])]
    lapsed = [rows[i].p_alive for i in await ids_of(sessions, kinds["lapsed"])]
    once = [rows[i].p_alive for i in await ids_of(sessions, kinds["once"])]
    assert max(lapsed) < min(steady), (sorted(lapsed)[-3:], sorted(steady)[:3])
    assert statistics.median(lapsed) < 0.1 and statistics.median(steady) > 0.9
    assert once == [1.0] * len(once)  # BG/NBD: nobody drops out before a repeat purchase
    steady_expected = [rows[i].expected_purchases for i in await ids_of(sessions, kinds["steady"])]
    lapsed_expected = [rows[i].expected_purchases for i in await ids_of(sessions, kinds["lapsed"])]
    assert max(lapsed_expected) < min(steady_expected) and min(steady_expected) > 1
    assert all(rows[i].model_ltv is not None and rows[i].model_ltv > 0 for i in await ids_of(sessions, kinds["steady"]))
    # The run is saved for the console: when, on what, with which parameters.
    async with sessions() as session:
        saved = await churn.model_status(session)
    assert saved.fitted and saved.ran_at_time == NOW and set(saved.bgnbd) >= {"r", "alpha", "a", "b"}
    assert saved.gamma_gamma is not None and saved.horizon_days == 90


async def test_the_written_values_are_the_models_formula_for_a_customer_checked_by_hand(sessions):
    batch, _ = shop(seed=3)
    day = lambda days_ago, hour=1: NOW.replace(hour=hour) - days_ago * DAY  # noqa: E731 - 10:00 Tokyo at hour 1 UTC
    batch += [
        order("HAND-1", "hand@example.com", 3000, day(100)),
        # Two orders on one day in Tokyo (23:30 and 00:30 UTC of the next day, 08:30 and 09:30 JST)
        # are one purchase of 5,000 + 7,000.
        order("HAND-2", "hand@example.com", 5000, (NOW - 60 * DAY).replace(hour=0, minute=30) - timedelta(hours=1)),
        order("HAND-3", "hand@example.com", 7000, (NOW - 60 * DAY).replace(hour=0, minute=30)),
        order("HAND-4", "hand@example.com", 8000, day(20)),
        order("HAND-5", "hand@example.com", 99999, day(10), status="cancelled"),
    ]
    await store(sessions, batch)
    status = await churn.refresh_model(sessions, now=NOW)
    assert status.fitted and status.gamma_gamma, (status.reason, status.spend_reason)
    # By hand: purchase days 100, 60 and 20 days ago -> x = 2, t_x = 80, T = 100 (days);
    # the repeat days' average spend (5,000 + 7,000 + 8,000) / 2 = 10,000.
    x, t_x, T, m = 2, 80.0, 100.0, 10_000.0
    r, alpha, a, b = (status.bgnbd[k] for k in ("r", "alpha", "a", "b"))
    p_alive = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    model = BGNBDModel(r=r, alpha=alpha, a=a, b=b)
    spend = GammaGammaModel(**{k: status.gamma_gamma[k] for k in ("p", "q", "gamma")})
    value = spend.p * (spend.gamma + x * m) / (spend.p * x + spend.q - 1)
    ltv = model.expected_purchases(3 * 365.0, x, t_x, T) * value * 0.3
    hand = (await ids_of(sessions, ["hand@example.com"]))[0]
    row = (await metrics_of(sessions))[hand]
    assert row.p_alive == pytest.approx(p_alive, rel=1e-9)
    assert row.expected_purchases == pytest.approx(float(model.expected_purchases(90.0, x, t_x, T)), rel=1e-9)
    assert row.model_ltv == round(float(ltv))
    async with sessions() as session:
        view = (await customer_metrics.read(session, [hand], now=NOW))[hand]
    assert view.p_alive == row.p_alive and view.expected_purchases == row.expected_purchases and view.model_ltv == row.model_ltv


async def test_the_horizon_and_margin_come_from_the_metric_settings(sessions):
    batch, kinds = shop(seed=5)
    await store(sessions, batch)
    await churn.refresh_model(sessions, now=NOW)
    steady = (await ids_of(sessions, kinds["steady"][:1]))[0]
    before = (await metrics_of(sessions))[steady]
    async with transaction(sessions) as session:
        await customer_metrics.set_rules(session, {"churn_horizon_days": 180, "gross_margin": 0.6}, now=NOW)
    status = await churn.refresh_model(sessions, now=NOW)
    after = (await metrics_of(sessions))[steady]
    assert status.horizon_days == 180
    assert after.expected_purchases > 1.5 * before.expected_purchases
    assert after.model_ltv == pytest.approx(2 * before.model_ltv, rel=1e-6, abs=1)


async def test_too_few_repeat_customers_leave_p_alive_empty_and_the_preset_falls_back(sessions):
    batch, kinds = shop(seed=11, steady=10, lapsed=5, once=30)
    await store(sessions, batch)
    # A model fitted before (on the same shop with more data) is not left behind as if current.
    async with transaction(sessions) as session:
        await session.execute(sa.update(CustomerMetrics).values(p_alive=0.3, expected_purchases=0.1, model_ltv=500))
    status = await churn.refresh_model(sessions, now=NOW)
    assert not status.fitted
    assert "too few repeat customers: 15 of 45" in status.reason and status.reason_code == "too_few_repeat_customers"
    rows = await metrics_of(sessions)
    assert {(row.p_alive, row.expected_purchases, row.model_ltv) for row in rows.values()} == {(None, None, None)}
    assert all(row.ltv > 0 for row in rows.values())  # the formula LTV is kept
    async with sessions() as session:
        assert await churn.model_fitted(session) is False
        saved = await churn.model_status(session)
    assert saved.reason == status.reason
    preset = next(p for p in segments.presets(NOW, churn_model=False) if p.key == "churn_risk")
    assert {"field": "recency_days", "op": "between", "value": [61, 180]} in preset.rule["all"]
    async with sessions() as session:
        preview = await segments.preview(session, preset.rule, now=NOW, sample=50)
    lapsed_recently = set(await ids_of(sessions, kinds["lapsed"])) | set(await ids_of(sessions, kinds["steady"]))
    assert {member.customer.id for member in preview.sample} <= lapsed_recently


async def test_the_churn_risk_preset_lists_lowest_p_alive_first(sessions):
    batch, kinds = shop(seed=13)
    await store(sessions, batch)
    await churn.refresh_model(sessions, now=NOW)
    preset = next(p for p in segments.presets(NOW, churn_model=True) if p.key == "churn_risk")
    async with sessions() as session:
        preview = await segments.preview(session, preset.rule, now=NOW, sample=100)
    values = [member.metrics.p_alive for member in preview.sample]
    assert preview.count == len(values) > 0
    assert values == sorted(values) and max(values) < 0.5
    assert {member.customer.id for member in preview.sample} <= set(await ids_of(sessions, kinds["lapsed"]))
    async with sessions() as session:
        by_id = await segments.preview(session, preset.rule, now=NOW, sample=100, order="id")
    assert [m.customer.id for m in by_id.sample] == sorted(m.customer.id for m in preview.sample)


async def test_the_daily_run_is_claimed_once_across_two_workers(sessions, database_url):
    batch, _ = shop(seed=17)
    await store(sessions, batch)
    other_engine = create_engine(database_url)  # a second worker: its own connections
    other = session_factory(other_engine)
    try:
        ran = await asyncio.gather(churn.refresh_model_if_due(sessions, now=NOW), churn.refresh_model_if_due(other, now=NOW))
        assert sum(status is not None for status in ran) == 1
        assert await churn.refresh_model_if_due(other, now=NOW + 23 * timedelta(hours=1)) is None
        later = await churn.refresh_model_if_due(other, now=NOW + DAY)
        assert later is not None and later.fitted
        # A CSV import of orders marks it due for the workers' next look.
        async with transaction(sessions) as session:
            await customer_metrics.mark_churn_model_due(session, now=NOW + DAY)
        assert await churn.refresh_model_if_due(sessions, now=NOW + DAY + timedelta(minutes=1)) is not None
    finally:
        await other_engine.dispose()
    async with sessions() as session:
        assert (await churn.model_status(session)).ran_at_time == NOW + DAY + timedelta(minutes=1)


async def test_the_fit_uses_a_sample_when_there_are_more_customers(sessions):
    batch, _ = shop(seed=19)
    await store(sessions, batch)
    async with sessions() as session:
        summaries = await churn.purchase_summaries(session, now=NOW)
    fitted = churn.fit(summaries, sample=100)
    assert fitted.fit_sample == 100
    scores = churn.score(fitted, summaries, customer_metrics.DEFAULT_RULES)
    assert scores.p_alive.shape == (140,) and all(math.isfinite(v) for v in scores.expected_purchases)


async def test_a_csv_import_of_orders_makes_the_model_due(sessions, tmp_path):
    from zoneinfo import ZoneInfo

    from kizuna.storage import imports

    async with transaction(sessions) as session:
        assert await customer_metrics.claim_churn_model(session, now=NOW, every=DAY)  # ran today
    async with transaction(sessions) as session:
        assert not await customer_metrics.claim_churn_model(session, now=NOW + timedelta(hours=1), every=DAY)
    path = tmp_path / "orders.csv"
    path.write_text("external_id,ordered_at,total,email\nCSV-1,2026-12-01T10:00:00+09:00,3000,csv@example.com\n", encoding="utf-8")
    summary = await imports.run_import(imports.ORDERS, path, sessions, zone=ZoneInfo("Asia/Tokyo"),
                                       now=lambda: NOW + timedelta(hours=2), dry_run=False)
    assert summary.records == 1
    async with transaction(sessions) as session:
        assert await customer_metrics.claim_churn_model(session, now=NOW + timedelta(hours=3), every=DAY)


async def test_every_write_method_stores_the_same_values(sessions):
    batch, _ = shop(seed=31, steady=3, lapsed=0, once=2)
    await store(sessions, batch)
    async with sessions() as session:
        ids = sorted((await metrics_of(sessions)).keys())
        postgres = session.bind.dialect.name == "postgresql"
    rows = [(customer_id, 0.25 + index / 10, 1.5 * index, None if index == 0 else 1000 * index) for index, customer_id in enumerate(ids)]
    for method in ("executemany",) + (("values", "unnest") if postgres else ()):
        async with transaction(sessions) as session:
            await customer_metrics.clear_churn_scores(session)
            await customer_metrics.write_churn_scores(session, rows, method=method)
        stored = await metrics_of(sessions)
        assert [(i, stored[i].p_alive, stored[i].expected_purchases, stored[i].model_ltv) for i in ids] == rows, method
