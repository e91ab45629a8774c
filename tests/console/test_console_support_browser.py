"""1:1チャット in a real browser, as the README's "try it" story goes: Kizuna runs as `make run`
runs it (the LINE emulator mounted, `kizuna demo`'s admin, FAQ, coupon and canned responses),
the console in one tab and the emulator's chat page in another. A customer asks for a person;
the conversation appears in the inbox without a reload; the admin takes it, replies (the reply
arrives in the emulator), writes a note (never sent), answers with a canned response, sees the
customer's sticker and image arrive live, resolves with the CSAT question, and the customer's
rating shows. Then a customer named `<img src=x onerror=alert(1)>` writes
`<script>alert(1)</script>`: every page shows it as text, and no dialog ever opens.

Screenshots go to the test's tmp dir (`screenshots/`); with KIZUNA_CONSOLE_SCREENSHOTS=DIR they
are copied there too (docs/screenshots/console/ is made that way).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from kizuna.bot.cli import _demo, _demo_admin
from kizuna.bot.keys import SESSIONS
from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, TABLET, fill_login, keep_screenshots, like_make_run

HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_TEXT = "<script>alert(1)</script>"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


async def test_a_newcomer_answers_a_customer_from_the_console(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=10_000)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, settings, runner):
        email, password = await _demo_admin(runner.app[SESSIONS])
        await _demo(settings)  # the example FAQ, the registration coupon, the canned responses

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            alerts: list[str] = []

            def on_dialog(dialog) -> None:
                # 解決 and クーポンを送る ask first (data-confirm): yes. Anything else would be an injected script.
                if dialog.type == "confirm":
                    return dialog.accept()
                alerts.append(dialog.message)
                return dialog.dismiss()

            try:
                staff_context = await browser.new_context(viewport=LAPTOP, locale="ja-JP")
                console = await staff_context.new_page()
                console.set_default_timeout(15_000)
                console.on("dialog", on_dialog)
                customer = await (await browser.new_context(viewport={"width": 1100, "height": 860}, locale="ja-JP")).new_page()
                customer.set_default_timeout(15_000)
                customer.on("dialog", on_dialog)

                async def shot(name: str, page=console) -> None:
                    await page.wait_for_load_state("networkidle")
                    await page.screenshot(path=shots / f"{name}.png")

                # -- the admin logs in with what `kizuna demo` printed and opens 1:1チャット ----------
                await console.goto(f"{base}/console/login")
                await fill_login(console, email, password)
                await expect(console.get_by_role("heading", name="今日の状況")).to_be_visible()
                await console.locator(".sidebar").get_by_role("link", name="1:1チャット").click()
                await expect(console.get_by_text("対応待ちのお問い合わせはありません。")).to_be_visible()
                await expect(console.locator("html")).to_have_attribute("data-live", "connected")
                await console.evaluate("window.kizunaNotReloaded = true")  # gone if the page reloads

                # -- another tab: a customer in the emulator asks for a person ----------------------
                await customer.goto(f"{base}/emulator/")
                await customer.fill("#new-user-name", "山田 花子")
                await customer.click("#new-user-button")
                await expect(customer.locator(".bot-bubble", has_text="友だち追加ありがとうございます")).to_be_visible()
                await customer.fill("#text-input", "担当者")
                await customer.press("#text-input", "Enter")
                await expect(customer.locator(".bot-bubble", has_text="担当者におつなぎします")).to_be_visible()

                # -- it appears in the inbox without a reload ----------------------------------------
                row = console.locator(".inbox-row", has_text="山田 花子")
                await expect(row).to_be_visible()
                await expect(row).to_contain_text("担当者")
                await expect(console.locator('[data-count="pending"]')).to_have_text("1")
                assert await console.evaluate("window.kizunaNotReloaded === true")
                await shot("17-inbox")

                # -- take it, reply, write a note ------------------------------------------------------
                await row.locator(".inbox-link").click()
                await expect(console.locator(".conv-name", has_text="山田 花子")).to_be_visible()
                await console.locator(".conv-actions").get_by_role("button", name="担当する").click()
                await expect(console.get_by_text("このお問い合わせを担当しました。")).to_be_visible()
                await console.locator("#reply-text").fill("お待たせしました。担当の佐藤です。ご用件をお聞かせください。")
                await console.get_by_role("button", name="送信").click()
                await expect(console.get_by_text("送信しました。")).to_be_visible()
                await expect(customer.locator(".bot-bubble", has_text="担当の佐藤です")).to_be_visible()  # on LINE, as the shop

                emulator_sent = await _sent_to_customer(base)
                await console.locator(".mode-note").click()
                await console.locator("#reply-text").fill("VIP顧客。前回の返品対応あり")
                await console.get_by_role("button", name="メモを保存").click()
                await expect(console.locator(".note-card", has_text="VIP顧客。前回の返品対応あり")).to_be_visible()
                assert await _sent_to_customer(base) == emulator_sent  # the note stays internal
                await expect(customer.get_by_text("VIP顧客")).to_have_count(0)

                # -- the customer writes, sends a sticker and a photo: they appear without a reload -------
                await console.evaluate("window.kizunaNotReloaded = true")
                await customer.fill("#text-input", "注文した化粧水がまだ届きません")
                await customer.press("#text-input", "Enter")
                await customer.click("#sticker-button")
                await customer.locator(".sticker-choice").first.click()
                await customer.click("#image-button")
                timeline = console.locator("[data-region=timeline]")
                await expect(timeline.locator(".bubble", has_text="注文した化粧水がまだ届きません")).to_be_visible()
                await expect(timeline.locator(".sticker-card")).to_be_visible()
                image = timeline.locator("img.media-image")
                await expect(image).to_be_visible()
                assert await image.evaluate("img => img.complete && img.naturalWidth > 0")  # fetched from LINE's content endpoint
                assert await console.evaluate("window.kizunaNotReloaded === true")

                # -- a canned response, its {name} filled in ----------------------------------------------
                await console.locator(".canned-select").select_option(label="/checking — 確認中")
                await expect(console.locator("#reply-text")).to_have_value("確認いたしますので、少々お待ちください。")
                await console.locator(".canned-select").select_option(label="/greeting — はじめのあいさつ")
                await expect(console.locator("#reply-text")).to_have_value(
                    "確認いたしますので、少々お待ちください。\n山田 花子様、お問い合わせありがとうございます。担当の者がお伺いします。")
                await console.locator("#reply-text").fill("山田 花子様、配送状況を確認いたします。")
                await console.locator("#reply-text").press("Control+Enter")
                await expect(customer.locator(".bot-bubble", has_text="配送状況を確認いたします")).to_be_visible()
                await shot("18-conversation")

                # -- resolve with the CSAT question; the customer rates; the rating shows -----------------
                await console.locator("#resolve-menu summary").click()
                await expect(console.get_by_label("満足度アンケート（1〜5）を送る")).to_be_checked()
                await console.locator("#resolve-menu").get_by_role("button", name="解決").click()
                await expect(console.get_by_text("解決にしました。お客様は自動応答に戻りました。")).to_be_visible()
                await expect(customer.locator(".bot-bubble", has_text="今回の対応はいかがでしたか")).to_be_visible()
                await shot("20-emulator-csat", customer)
                await customer.locator(".quick-reply", has_text="5").click()
                await expect(customer.locator(".bot-bubble", has_text="ご評価ありがとうございました")).to_be_visible()
                await expect(console.get_by_text("満足度: 5 / 5")).to_be_visible()  # live, on the conversation page
                await shot("19-conversation-resolved")

                # -- a customer whose name and message are HTML -------------------------------------------------
                async with aiohttp.ClientSession(base_url=base) as http:
                    async with http.post("/emulator/api/users", json={"display_name": HOSTILE_NAME}) as response:
                        hostile = (await response.json())["user_id"]
                    await http.post(f"/emulator/api/users/{hostile}/follow")
                    for text in ("担当者", HOSTILE_TEXT):
                        async with http.post(f"/emulator/api/users/{hostile}/text", json={"text": text}) as response:
                            assert response.status == 200
                    await http.post(f"/emulator/api/users/{hostile}/location", json={"title": "<b>店</b>", "address": "東京都千代田区丸の内1丁目",
                                                                                    "latitude": 35.681236, "longitude": 139.767125})
                await console.locator(".sidebar").get_by_role("link", name="1:1チャット").click()
                hostile_row = console.locator(".inbox-row", has_text=HOSTILE_NAME)
                await expect(hostile_row).to_be_visible()
                await expect(hostile_row.locator(".inbox-preview")).to_contain_text("[位置情報]")
                await hostile_row.locator(".inbox-link").click()
                await expect(console.locator(".conv-name", has_text=HOSTILE_NAME)).to_be_visible()
                await expect(console.locator(".bubble-text", has_text=HOSTILE_TEXT)).to_be_visible()
                await expect(console.locator(".location-card", has_text="<b>店</b>")).to_be_visible()
                assert await console.locator('img[src="x"]').count() == 0
                assert await console.locator("main script").count() == 0
                await shot("21-conversation-xss")

                # -- 友だち, the customer's page, 定型文, English, a tablet --------------------------------------------
                await console.locator(".sidebar").get_by_role("link", name="友だち").click()
                await expect(console.locator("td", has_text=HOSTILE_NAME)).to_be_visible()
                await console.get_by_label("名前・電話番号・メールアドレス・LINEユーザーIDで検索").fill("山田花子")
                await console.get_by_role("button", name="検索").click()
                await expect(console.get_by_text("1人")).to_be_visible()
                await console.get_by_role("link", name="山田 花子").click()
                await console.get_by_placeholder("タグを追加").fill("VIP")
                await console.locator("#tags").get_by_role("button", name="追加").click()
                await expect(console.locator(".tag-chip", has_text="VIP")).to_be_visible()
                await expect(console.locator(".note-card", has_text="VIP顧客")).to_be_visible()  # the whole timeline
                await shot("22-customer")
                await console.goto(f"{base}/console/customers")
                await shot("23-customers")
                await console.locator(".sidebar").get_by_role("link", name="定型文").click()
                await expect(console.get_by_text("/greeting")).to_be_visible()
                await shot("24-canned")
                await console.goto(f"{base}/console/conversations?tab=resolved")
                await console.locator(".sidebar").get_by_role("button", name="English").click()
                await expect(console.locator(".tab.on")).to_contain_text("Resolved")
                await expect(console.get_by_text("CSAT 5")).to_be_visible()
                await shot("25-inbox-resolved-en")
                await console.locator(".sidebar").get_by_role("button", name="日本語").click()

                tablet = await browser.new_context(viewport=TABLET, locale="ja-JP", storage_state=await staff_context.storage_state())
                tablet_page = await tablet.new_page()
                tablet_page.on("dialog", on_dialog)
                await tablet_page.goto(f"{base}/console/conversations?tab=all")
                await tablet_page.locator(".inbox-link").first.click()
                await expect(tablet_page.locator(".composer")).to_be_visible()
                await shot("26-tablet-conversation", tablet_page)
                assert await tablet_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                await tablet.close()
                assert alerts == []
            finally:
                await browser.close()
    keep_screenshots(shots)


async def _sent_to_customer(base: str) -> int:
    """How many messages the emulator has seen the bot send (its admin API)."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/emulator/api/admin/stats") as response:
        return (await response.json())["messages"]
