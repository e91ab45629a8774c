"""The churn model in the console, in a real browser (Debian's Chromium through Playwright): a shop's
orders, the model not available (no orders yet: said why) then fitted (as the daily worker run
does), then the marketer sees the model's
推定日時 and parameters on the segments page, opens 離脱予備軍, saves it, and reads its members
lowest 継続見込み first, and one member's outlook in the customer panel. Screenshots 66-69
(KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from kizuna.bot.keys import SESSIONS
from kizuna.campaigns import churn
from kizuna.storage import orders
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, Order, OrderCreate
from tests.conftest import order_history_anchor
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")

FAMILY = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "小林", "加藤", "吉田"]
GIVEN = ["花子", "美咲", "健", "由美", "翔太", "さくら", "葵", "蓮", "結衣", "大輔"]


async def seed(sessions) -> None:
    """150 customers drawn from the BG/NBD story itself (first order within 400 days; while active,
    orders at a rate λ ~ Gamma(0.8, 30 days); after each one, gone for good with p ~ Beta(1, 4)),
    each with their own usual order value."""
    rng, now, batch, names = random.Random(29), order_history_anchor(), [], {}
    for n in range(150):
        at = now - timedelta(days=rng.uniform(0, 400))
        rate, dropout, usual = rng.gammavariate(0.8, 1 / 30), rng.betavariate(1, 4), rng.gammavariate(3, 1500) + 1000
        k = 0
        while at <= now:
            batch.append(OrderCreate.model_validate({
                "external_id": f"B-{n}-{k}", "ordered_at": at.isoformat(), "email": f"buyer{n}@example.com",
                "total": round(rng.gammavariate(6, usual / 6)) + 1, "items": [{"sku": "HC-1", "category": "ヘアケア", "unit_price": 1}],
            }))
            if rng.random() < dropout:
                break
            at, k = at + timedelta(days=rng.expovariate(rate)), k + 1
        names[f"B-{n}-0"] = f"{FAMILY[n % 10]} {GIVEN[(n // 10) % 10]}"
    for start in range(0, len(batch), 500):
        async with transaction(sessions) as session:
            await orders.upsert(session, batch[start:start + 500], now=now, source="test")
    async with transaction(sessions) as session:
        owner = dict((await session.execute(sa.select(Order.external_id, Order.customer_id))).all())
        for first, name in names.items():
            customer = await session.get(Customer, owner[first])
            customer.full_name = customer.display_name = name


async def test_the_marketer_reads_churn_risk_in_the_console(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        assert not (await churn.refresh_model(sessions)).fitted  # no orders yet
        async with admin_page(base, sessions) as (page, errors):
            await page.goto(f"{base}/console/segments")
            await expect(page.locator("[data-model-unavailable]")).to_contain_text("モデルは利用できません")
            await expect(page.locator("#churn-model")).to_contain_text("too few repeat customers: 0 of 0")
            await expect(page.locator("#churn-model")).to_contain_text("2日以上購入したお客様が0人中0人です（推定には30人以上必要です）")
            await expect(page.locator("[data-preset=churn_risk]")).to_contain_text("最終購入が61〜180日前")
            await page.locator("#churn-model").screenshot(path=shots / "74-churn-model-unavailable.png")

            await seed(sessions)
            status = await churn.refresh_model(sessions)
            assert status.fitted, status.reason
            await page.goto(f"{base}/console/segments")
            model = page.locator("#churn-model")
            await expect(model).to_contain_text("モデル推定日時")
            await expect(model).to_contain_text("150人（リピーター91人、推定に150人を使用）")
            await expect(model).to_contain_text(f"r={status.bgnbd['r']:.3f}")
            await expect(page.locator("[data-preset=churn_risk]")).to_contain_text("継続見込みが50%未満")
            await full_shot(page, shots / "75-churn-model.png")

            await page.locator("[data-preset=churn_risk]").click()
            await page.get_by_role("button", name="保存", exact=True).click()
            await expect(page.get_by_text("セグメントを保存しました。")).to_be_visible()
            await expect(page.locator("[data-order=churn_risk]")).to_have_text("継続見込みの低い順")
            cells = page.locator("tbody td[data-p-alive]")
            await expect(cells.first).to_be_visible()
            values = [float(value) for value in await cells.evaluate_all("cells => cells.map(c => c.dataset.pAlive)")]
            assert values == sorted(values) and len(values) >= 5 and values[-1] < 0.5, values
            await full_shot(page, shots / "76-churn-risk-segment.png")

            await page.locator("tbody tr").first.get_by_role("link").click()
            panel = page.locator("#purchases")
            await expect(panel).to_contain_text("継続見込み")
            await expect(panel.locator("[data-p-alive]")).to_have_text(f"{values[0] * 100:.0f}%")
            await expect(panel).to_contain_text("今後90日の購入見込み")
            await full_shot(page, shots / "77-customer-outlook.png")
            assert errors == [], errors
    keep_screenshots(shots)
