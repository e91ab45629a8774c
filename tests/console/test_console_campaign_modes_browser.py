"""配信's delivery modes and 繰り返し in a real browser (Debian's Chromium through Playwright): the
marketer picks 「繰り返し」 with a cron rule and sees the next three runs, chooses オーディエンス配信
(narrowcast) and is refused it for a message with a name, then sends identical content by
narrowcast to sixty friends of the emulator and reads LINE's counts on the campaign's page.
Screenshots: modes-1 onward (KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.bot.keys import SESSIONS
from kizuna.campaigns import segments
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")

FRIENDS = 60  # LINE narrowcasts only to audiences of 50 or more


async def friends_follow(base: str, sessions) -> None:
    async with aiohttp.ClientSession(base_url=base) as http:
        for n in range(FRIENDS):
            async with http.post("/emulator/api/users", json={"display_name": f"お客様{n}"}) as response:
                user_id = (await response.json())["user_id"]
            async with http.post(f"/emulator/api/users/{user_id}/follow") as response:
                assert response.status == 200

    async def known() -> bool:
        async with sessions() as session:
            return (await session.execute(sa.select(sa.func.count()).select_from(Customer)
                                          .where(Customer.followed))).scalar_one() >= FRIENDS

    await eventually(known, timeout=30, what="the friends to be processed")


async def test_a_marketer_sets_a_recurring_rule_and_sends_by_narrowcast(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        await friends_follow(base, sessions)
        async with transaction(sessions) as session:
            await segments.create(session, "LINE友だち（全員）", {"field": "registered", "op": "eq", "value": False}, now=utcnow())
        async with admin_page(base, sessions) as (page, errors):
            # -- 繰り返し: a rule, its next three runs, scheduled ---------------------------------------
            await page.goto(f"{base}/console/campaigns/new")
            await page.get_by_label("配信名（管理用）").fill("毎週月曜のおすすめ")
            await page.get_by_label("配信先").select_option(label="LINE友だち（全員）")
            await page.get_by_label("メッセージ1の本文", exact=True).fill("今週のおすすめ商品をご紹介します。")
            await page.get_by_text("繰り返し", exact=True).click()
            rule = page.get_by_label("繰り返しのルール（cron 形式）")
            await expect(rule).to_be_visible()
            await rule.fill("0 10 * * 1")
            await page.get_by_text("オーディエンス配信", exact=True).click()
            await page.get_by_role("button", name="次の配信日時を確認").click()
            runs = page.locator("[data-recurrence-next] li")
            await expect(runs).to_have_count(3)
            for index in range(3):
                await expect(runs.nth(index)).to_contain_text("(月) 10:00")
            await expect(page.get_by_label("繰り返しのルール（cron 形式）")).to_have_value("0 10 * * 1")  # kept after the refresh
            await full_shot(page, shots / "modes-1-campaign-editor-recurring-narrowcast.png")
            await page.get_by_role("button", name="配信を予約する").click()
            await expect(page.get_by_role("heading", name="毎週月曜のおすすめ")).to_be_visible()
            await expect(page.locator("[data-next-runs] li")).to_have_count(3)
            await expect(page.locator("[data-delivery]")).to_have_text("オーディエンス配信")
            await expect(page.get_by_text("まだ配信されていません。")).to_be_visible()
            await full_shot(page, shots / "modes-2-campaign-recurring.png")

            # -- a bad rule, and narrowcast refused for a message with a name ----------------------------
            await page.goto(f"{base}/console/campaigns/new")
            await page.get_by_label("配信名（管理用）").fill("お名前入りのお知らせ")
            await page.get_by_label("配信先").select_option(label="LINE友だち（全員）")
            await page.get_by_label("メッセージ1の本文", exact=True).fill("{name}さん、いつもありがとうございます。")
            await page.get_by_text("オーディエンス配信", exact=True).click()
            await page.get_by_label("配信停止時間帯を守る").uncheck()
            await page.get_by_role("button", name="今すぐ配信する").click()
            await expect(page.locator("#error-delivery")).to_contain_text("オーディエンス配信は全員に同じ内容のときだけ使えます")
            await expect(page.get_by_label("メッセージ1の本文", exact=True)).to_have_value("{name}さん、いつもありがとうございます。")
            await full_shot(page, shots / "modes-3-campaign-editor-narrowcast-refused.png")
            await page.get_by_text("繰り返し", exact=True).click()
            await page.get_by_label("繰り返しのルール（cron 形式）").fill("*/5 * * * *")
            await page.get_by_role("button", name="次の配信日時を確認").click()
            await expect(page.locator(".schedule-repeat .field-error")).to_contain_text("繰り返しのルールを確認してください")
            await full_shot(page, shots / "modes-4-campaign-editor-rule-refused.png")

            # -- narrowcast now: one request to an uploaded audience; LINE's counts shown -------------------
            await page.goto(f"{base}/console/campaigns/new")
            await page.get_by_label("配信名（管理用）").fill("週末セール（オーディエンス配信）")
            await page.get_by_label("配信先").select_option(label="LINE友だち（全員）")
            await page.get_by_label("メッセージ1の本文", exact=True).fill("週末セール開催中！全品10%オフです。")
            await page.get_by_text("オーディエンス配信", exact=True).click()
            await page.get_by_label("配信停止時間帯を守る").uncheck()
            async with aiohttp.ClientSession(base_url=base) as http:  # LINE's progress answers slowly: the page shows LINE delivering
                async with http.post("/emulator/api/admin/delay_next",
                                     json={"endpoint": "narrowcast_progress", "seconds": 8, "count": 2}) as response:
                    assert response.status == 200
            await page.get_by_role("button", name="今すぐ配信する").click()
            await expect(page.get_by_role("heading", name="週末セール（オーディエンス配信）")).to_be_visible()
            # The page follows by itself: the card's stages as they move, then LINE delivering.
            delivering = page.locator("[data-line-delivering]")
            await expect(delivering).to_contain_text("LINE が配信しています", timeout=20_000)
            await expect(page.locator("[data-narrowcast-count=uploaded]")).to_have_text(str(FRIENDS))
            await expect(page.get_by_role("button", name="一時停止")).to_have_count(0)
            await expect(page.get_by_role("button", name="配信を中止")).to_have_count(0)
            await full_shot(page, shots / "modes-5-campaign-narrowcast-line-delivering.png")
            await expect(page.locator("[data-status-badge]")).to_have_text("配信完了", timeout=30_000)
            await page.reload()
            await expect(page.locator("[data-narrowcast-state]")).to_have_text("完了")
            await expect(page.locator('[data-stat="sent"]')).to_have_text(str(FRIENDS))
            await expect(page.locator("[data-narrowcast-card]")).to_contain_text("LINE の成功数")
            await full_shot(page, shots / "modes-6-campaign-narrowcast-completed.png")
            assert [error for error in errors if "status of 400" not in error] == [], errors  # the refusals answer 400
    keep_screenshots(shots)
