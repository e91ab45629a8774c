"""オートメーション in a real browser (Debian's Chromium through Playwright): a marketer opens the
rules page, tries to save a rule without a name (refused, nothing stored), writes one — when the
tag 「VIP」 is added, send a message and add a tag — sees it in words on the list, a friend of the
emulator gets the tag and the message, and the firing log shows what ran. Screenshots: automation-*
(KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.bot.keys import SESSIONS
from kizuna.storage import tags
from kizuna.storage.db import transaction
from kizuna.storage.models import AutomationRule, Customer
from tests.conftest import eventually
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


async def test_a_marketer_writes_a_rule_and_sees_it_fire(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        async with aiohttp.ClientSession(base_url=base) as http:
            async with http.post("/emulator/api/users", json={"display_name": "山田 花子"}) as response:
                user_id = (await response.json())["user_id"]
            async with http.post(f"/emulator/api/users/{user_id}/follow") as response:
                assert response.status == 200

        async def followed() -> bool:
            async with sessions() as session:
                return (await session.execute(sa.select(Customer.id).where(Customer.line_user_id == user_id))).first() is not None

        await eventually(followed, timeout=20, what="the follow to be processed")
        async with admin_page(base, sessions) as (page, errors):
            await page.locator(".sidebar").get_by_role("link", name="オートメーション").click()
            await expect(page.get_by_text("ルールはまだありません")).to_be_visible()
            await page.get_by_role("link", name="ルールを作る").click()

            # Saved without a name: refused, said so, nothing stored.
            await page.get_by_role("button", name="作成").click()
            await expect(page.locator(".alert-error")).to_contain_text("「ルール名」を確認してください")
            await full_shot(page, shots / "automation-1-editor-invalid.png")
            async with sessions() as session:
                assert (await session.execute(sa.select(sa.func.count()).select_from(AutomationRule))).scalar_one() == 0

            await page.get_by_label("ルール名").fill("VIPのお客様へお礼")
            await page.get_by_label("きっかけ（IF）").select_option("tag_added")
            await page.get_by_label("タグ / イベント名 / 配信ID / 流入経路コード").fill("VIP")
            await page.get_by_label("アクション 1（THEN）").select_option("send_message")
            await page.locator("textarea[name=action0_text]").fill("{name}様、いつもありがとうございます。VIP特典をご用意しました。")
            await page.get_by_label("アクション 2（THEN）").select_option("add_tag")
            await page.locator("input[name=action1_tag]").fill("VIP案内済み")
            await full_shot(page, shots / "automation-2-editor.png")
            await page.get_by_role("button", name="作成").click()
            await expect(page.get_by_text("ルールを作成しました")).to_be_visible()

            await page.get_by_role("link", name="オートメーション一覧").click()
            row = page.locator("[data-automations] tbody tr")
            await expect(row).to_contain_text("タグ「VIP」が付いたとき")
            await expect(row).to_contain_text("メッセージを送る（1通） → タグ「VIP案内済み」を付ける")

            async with sessions() as session:
                customer_id = (await session.execute(sa.select(Customer.id).where(Customer.line_user_id == user_id))).scalar_one()
            async with transaction(sessions) as session:
                await tags.add(session, customer_id, "VIP", actor=None)

            async def thanked() -> bool:
                async with aiohttp.ClientSession(base_url=base) as http:
                    async with http.get(f"/emulator/api/users/{user_id}/timeline") as response:
                        return "VIP特典" in await response.text()

            await eventually(thanked, timeout=20, what="the rule's message in the emulator")
            await page.reload()
            await expect(row.locator("td.num")).to_have_text("1")
            await full_shot(page, shots / "automation-3-list.png")
            await page.get_by_role("link", name="実行ログ").click()
            await expect(page.locator("[data-firings]")).to_contain_text("send_message: queued")
            await expect(page.locator("[data-firings]")).to_contain_text("山田 花子")
            await full_shot(page, shots / "automation-4-log.png")
            await page.get_by_role("button", name="English").click()
            await expect(page.get_by_role("heading", name="Automation firing log")).to_be_visible()
            await full_shot(page, shots / "automation-5-log-en.png")
            assert [error for error in errors if "status of 400" not in error] == [], errors  # (the refused save)
    keep_screenshots(shots)
