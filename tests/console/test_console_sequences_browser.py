"""ステップ配信 in a real browser (Debian's Chromium through Playwright): the marketer opens the
sequence editor, builds three steps (day 0 → day 3 → day 7) and sees them on the timeline with the
LINE-like preview of each step as typed, saves; an event starts it for three friends; the clock
moves three days (never a sleep) and step 2 follows; an order comes in; the sequence's page shows
per-step results. Screenshots: 120-124 (KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from kizuna.appkeys import SERVICES
from kizuna.bot.keys import SESSIONS
from kizuna.storage import orders
from kizuna.storage import sequences as store
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, OrderCreate, StepSequence
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run
from tests.console.test_console_campaigns_browser import friends_follow

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


async def test_a_marketer_builds_a_sequence_on_the_timeline_and_reads_its_results_per_step(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        users = await friends_follow(base, sessions)
        async with admin_page(base, sessions) as (page, errors):
            await page.locator(".sidebar").get_by_role("link", name="ステップ配信").click()
            await expect(page.get_by_text("ステップ配信はまだありません。")).to_be_visible()
            await page.get_by_role("link", name="新しいステップ配信").first.click()

            await page.get_by_label("名前（管理用）").fill("カゴ落ちフォロー")
            await page.get_by_label("開始のきっかけ").select_option("api_event")
            await page.get_by_label("イベントの種類（POST /api/v1/events の type）").fill("cart_abandoned")
            await page.get_by_label("ステップ1 メッセージ1の本文").fill("{name}さん、カートに商品が残っています。")
            await expect(page.locator('[data-preview-messages="s0m"] .lp-bubble')).to_contain_text("花子さん、カートに商品が残っています。")
            await page.get_by_role("button", name="ステップを追加").click()
            await page.locator('input[name="s1_days"]').fill("3")
            await page.get_by_label("ステップ2 メッセージ1の本文").fill("まだお悩みですか？人気の商品はお早めに。")
            await page.get_by_role("button", name="ステップを追加").click()
            await page.locator('select[name="s2_from"]').select_option("enrolment")
            await page.locator('input[name="s2_days"]').fill("7")
            await page.get_by_label("ステップ3 メッセージ1の本文").fill("最後のご案内です。")
            await page.locator('[data-step="2"]').get_by_role("button", name="メッセージを追加").click()
            await page.get_by_label("ステップ3 メッセージ2の本文").fill("送料無料は今週末まで！")
            await page.get_by_role("button", name="ステップを追加").click()  # re-render: the timeline's days follow the delays
            await page.get_by_role("button", name="このステップを削除").nth(3).click()
            await expect(page.locator(".tl-step")).to_have_count(3)
            await expect(page.locator("[data-step-when]")).to_have_text(["開始直後", "3日後", "7日後"])
            await expect(page.locator(".tl-gap")).to_have_text(["3日後", "4日後"])
            await expect(page.locator('[data-preview-messages="s2m"] .lp-bubble')).to_have_count(2)
            # Typed delays move the timeline at once (sequences.js), as a re-render would draw it.
            await page.locator('input[name="s1_days"]').fill("2")
            await expect(page.locator("[data-step-when]")).to_have_text(["開始直後", "2日後", "7日後"])
            await expect(page.locator(".tl-gap")).to_have_text(["2日後", "5日後"])
            await page.locator('input[name="s1_days"]').fill("3")
            await expect(page.locator(".tl-gap")).to_have_text(["3日後", "4日後"])
            await full_shot(page, shots / "120-sequence-editor.png")
            await page.get_by_role("button", name="作成して開始").click()
            await expect(page.get_by_text("ステップ配信を作成しました。")).to_be_visible()

            # An event for each of the five: who blocked never enters; who opted out exits when day 0 falls due.
            async with sessions() as session:
                people = dict((await session.execute(sa.select(Customer.line_user_id, Customer.id))).all())
            async with transaction(sessions) as session:
                for name, user_id in users.items():
                    await store.receive_event(session, customer_id=people[user_id], type="cart_abandoned", data={}, event_id=None, now=utcnow())
            [sequence_id] = [s.id for s in await _sequences(sessions)]

            async def sent(step: int, n: int):
                async def check() -> bool:
                    async with sessions() as session:
                        return (await store.step_results(session, sequence_id, 3))[step].sent == n
                return check

            await eventually(await sent(0, 3), timeout=20, what="day 0 sent to three")
            runner.app[SERVICES].clock = lambda: utcnow() + timedelta(days=3, minutes=1)
            await eventually(await sent(1, 3), timeout=20, what="day 3 sent to three")
            async with transaction(sessions) as session:
                await orders.upsert(session, [OrderCreate(external_id="EC-100", line_user_id=users["山田 花子"], ordered_at=utcnow(), total=5400)],
                                    now=utcnow(), source="test")

            await page.reload()
            await expect(page.locator('[data-step-row="0"] [data-cell="sent"]')).to_have_text("3")
            await expect(page.locator('[data-step-row="1"] [data-cell="sent"]')).to_have_text("3")
            await expect(page.locator('[data-step-row="1"] [data-cell="revenue"]')).to_have_text("¥5,400")
            await expect(page.locator('[data-step-row="0"] [data-cell="exits"]')).to_contain_text("配信停止 1")
            await full_shot(page, shots / "121-sequence-results.png")

            await page.locator(".sidebar").get_by_role("link", name="ステップ配信").click()
            await expect(page.locator('[data-cell="enrolled"]')).to_have_text("4")  # who blocked never entered (not a friend)
            await full_shot(page, shots / "122-sequences.png")
            await page.get_by_role("link", name="カゴ落ちフォロー").click()
            await page.get_by_role("link", name="ステップ配信を編集").click()
            await expect(page.locator("[data-edit-rule]")).to_contain_text("いま2人が進行中です")  # 花子 ordered: "ordered again" (on by default) ended hers
            await full_shot(page, shots / "123-sequence-edit.png")
            assert errors == [], errors
    keep_screenshots(shots)


async def _sequences(sessions) -> list[StepSequence]:
    async with sessions() as session:
        return list((await session.execute(sa.select(StepSequence))).scalars())


async def test_the_campaign_results_page_shows_lines_own_figures(database_url, redis_prefix, redis_cleanup, tmp_path):
    """LINE's opens and clicks of the campaign's aggregation unit beside Kizuna's counts (screenshot 124)."""
    from playwright.async_api import expect

    from kizuna.bot.keys import LINE
    from kizuna.campaigns import campaigns, insight
    from kizuna.emulator import EMULATOR_KEY
    from kizuna.storage.models import Campaign

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        users = await friends_follow(base, sessions)
        emulator = next(sub[EMULATOR_KEY] for sub in runner.app._subapps if EMULATOR_KEY in sub)
        async with transaction(sessions) as session:
            campaign = await campaigns.create(
                session, name="冬のセールのお知らせ", segment_id=None, rule={"field": "followed", "op": "eq", "value": True},
                variants=[campaigns.VariantIn(messages=[{"type": "text", "text": "冬のセール開催中！"}], percent=100)],
                send_at=None, quiet_hours=False, track_links=False, now=utcnow())

        async def completed() -> bool:
            async with sessions() as session:
                return (await session.get(Campaign, campaign.id)).status == "completed"

        await eventually(completed, timeout=20, what="the campaign sent")
        for name in ("山田 花子", "佐藤 健", "鈴木 美咲"):
            emulator.open(users[name])
        emulator.insight_min_users = 3  # (LINE's is 20: two taps stay withheld, as LINE would show them)
        await insight.refresh_due(sessions, runner.app[LINE].get_statistics_per_unit, now=utcnow() + timedelta(days=1))
        async with admin_page(base, sessions) as (page, errors):
            await page.goto(f"{base}/console/campaigns/{campaign.id}")
            panel = page.locator("[data-line-insight]")
            await expect(panel.locator('[data-insight="unique_impressions"] [data-line]')).to_have_text("3")
            await expect(panel.locator('[data-insight="unique_clicks"] [data-line]')).to_contain_text("非公開")
            await panel.scroll_into_view_if_needed()
            await full_shot(page, shots / "124-campaign-line-insight.png")
            assert errors == [], errors
    keep_screenshots(shots)
