"""「このセグメントにタグを付ける / 外す」 in a real browser (Debian's Chromium through Playwright):
a marketer opens a saved segment, asks to tag it, sees how many it will change, confirms, and
sees the tag in a customer's panel. Screenshots 66- and 67- (KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kizuna.bot.keys import SESSIONS
from kizuna.campaigns import segments
from kizuna.storage import tags
from kizuna.storage.db import transaction
from kizuna.storage.types import utcnow
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run
from tests.console.test_console_segments_browser import SHOP, seed_shop

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")

MEMBERS = sum(1 for _name, member, _bought in SHOP if member)


async def test_a_marketer_tags_every_customer_of_a_segment(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        await seed_shop(sessions)
        async with transaction(sessions) as session:
            segment = await segments.create(session, "会員", {"field": "registered", "op": "eq", "value": True}, now=utcnow())
        async with admin_page(base, sessions) as (page, errors):
            await page.goto(f"{base}/console/segments/{segment.id}")

            card = page.locator("#bulk-tags")
            await expect(card.get_by_role("heading")).to_have_text("このセグメントにタグを付ける / 外す")
            await card.get_by_label("タグ（例: セール関心）").fill("会員限定セール")
            await card.get_by_label("操作").select_option("add")
            await card.get_by_role("button", name="人数を確認").click()
            confirm = page.locator(".bulk-confirm")
            await expect(confirm).to_contain_text(f"該当{MEMBERS}人のうち{MEMBERS}人にタグ「会員限定セール」を付けます")
            async with sessions() as session:  # asking changed nothing
                assert await tags.in_use(session) == []
            await full_shot(page, shots / "66-segment-tags-confirm.png")

            await confirm.get_by_role("button", name=f"{MEMBERS}人に付ける").click()
            await expect(page.get_by_role("status")).to_contain_text(f"{MEMBERS}人にタグ「会員限定セール」を付けました。")
            await expect(page.locator(".bulk-confirm")).to_have_count(0)
            await full_shot(page, shots / "67-segment-tagged.png")
            async with sessions() as session:
                assert await tags.in_use(session) == [("会員限定セール", MEMBERS)]

            # the customer's panel shows it
            await page.locator("tbody tr a").first.click()
            await expect(page.locator("#tags .tag-chip")).to_contain_text("会員限定セール")
            assert errors == [], errors
    keep_screenshots(shots)
