"""The pages that set up the bot and the coupons, in a real browser (Debian's Chromium through
Playwright), as `make run` runs Kizuna: embedded, the LINE emulator mounted, the demo's FAQ
and first admin.

A customer asks something the FAQ does not cover (and another sends a script tag); the admin
turns the question into a phrasing of an existing entry with one click, and the bot then
answers that phrasing in the emulator. The admin sets the privacy policy URL, business hours,
a keyword reply and a coupon, sets up the rich menus; a support account redeems a customer's
coupon at the till (then the same code again, and a typo). Screenshots of every page go to
the test's tmp dir, and with KIZUNA_CONSOLE_SCREENSHOTS=DIR also there (as
tests/console/test_console_browser.py does; these are numbered from 30).
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.bot.cli import DEMO_FAQ, _demo_admin
from kizuna.bot.keys import SESSIONS
from kizuna.storage import audit, coupons, faq as faq_store, staff as staff_store
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, InboundEvent
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, TABLET, fill_login, keep_screenshots, like_make_run
from tests.console.test_console_coupons import qr_frame

UNANSWERED = "紙袋つけてください"  # the demo FAQ has no answer for it; it is gift wrapping's business
SCRIPT = "<script>alert('faq')</script>手提げ袋をもらえますか"
SUPPORT_PASSWORD = "till passphrase 2026"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


class Customers:
    """Customers in the emulator, through its own HTTP API (as a person in its chat page)."""

    def __init__(self, http: aiohttp.ClientSession, sessions):
        self.http, self.sessions = http, sessions

    async def add(self, name: str) -> str:
        async with self.http.post("/emulator/api/users", json={"display_name": name}) as response:
            user_id = (await response.json())["user_id"]
        async with self.http.post(f"/emulator/api/users/{user_id}/follow") as response:
            assert response.status == 200

        async def greeted() -> bool:  # the follow is answered before anything the test says
            return bool(await self.bot_texts(user_id)) and await self.idle()

        await eventually(greeted, timeout=20, what="the greeting")
        return user_id

    async def bot_texts(self, user_id: str) -> list[str]:
        async with self.http.get(f"/emulator/api/users/{user_id}/timeline") as response:
            items = (await response.json())["items"]
        return [item["message"].get("text", "") for item in items if item.get("side") == "bot" and "message" in item]

    async def say(self, user_id: str, text: str) -> list[str]:
        """Send a text; the bot's texts that answered it (the replies arrive after the event is done)."""
        before = len(await self.bot_texts(user_id))
        async with self.http.post(f"/emulator/api/users/{user_id}/text", json={"text": text}) as response:
            assert response.status == 200

        async def answered() -> bool:
            return len(await self.bot_texts(user_id)) > before and await self.idle()

        await eventually(answered, timeout=20, what=f"the bot's answer to {text!r}")
        return (await self.bot_texts(user_id))[before:]

    async def idle(self) -> bool:
        async with self.sessions() as session:
            return not (await session.execute(sa.select(sa.func.count()).select_from(InboundEvent)
                                              .where(InboundEvent.status == "pending"))).scalar_one()


def y4m(grey: bytes, width: int = 320, height: int = 240) -> bytes:
    """A still video (Chromium's fake camera reads Y4M): the grey frame, no colour."""
    header = f"YUV4MPEG2 W{width} H{height} F5:1 Ip A1:1 C420jpeg\n".encode()
    return header + b"FRAME\n" + grey + bytes([128]) * (width * height // 2)


async def _code_for(sessions, line_user_id: str, full_name: str) -> str:
    """The registration coupon given to a customer (the demo's coupon), as the bot would."""
    async with transaction(sessions) as session:
        customer = (await session.execute(sa.select(Customer).where(Customer.line_user_id == line_user_id))).scalar_one()
        customer.full_name, customer.registered, customer.registered_at = full_name, True, utcnow()
        coupon = await coupons.registration_coupon(session)
        result = await coupons.issue(session, coupon_id=coupon.id, customer_id=customer.id, now=utcnow())
    return result.grant.code


async def test_a_shop_sets_up_its_bot_and_redeems_a_coupon(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import async_playwright, expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        email, password = await _demo_admin(sessions)
        async with transaction(sessions) as session:  # what `kizuna demo` loads
            await faq_store.import_entries(session, faq_store.parse_csv(DEMO_FAQ.read_bytes()))
            await coupons.create_coupon(session, {"title": "会員登録特典 500円OFF", "description": "お会計から500円引きになります(1回限り)。",
                                                  "discount_type": "amount", "discount_value": 500, "valid_days": 30,
                                                  "trigger": "registration"})
            new = await staff_store.prepare(email="till@example.com", display_name="店舗スタッフ", role="support",
                                            password=SUPPORT_PASSWORD)
            await staff_store.create(session, new, actor=audit.CLI)

        async with aiohttp.ClientSession(base_url=base) as http:
            customers = Customers(http, sessions)
            hanako, ken = await customers.add("山田 花子"), await customers.add("佐藤 健")
            for user_id in (hanako, ken):
                assert "担当者" in " ".join(await customers.say(user_id, UNANSWERED))  # unanswered: a person is offered
            await customers.say(ken, SCRIPT)

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                dialogs: list[tuple[str, str]] = []

                async def on_dialog(dialog) -> None:
                    """Our confirmations are answered yes; anything else (an alert a script would
                    show) is recorded, and the test fails on it."""
                    dialogs.append((dialog.type, dialog.message))
                    await (dialog.accept() if dialog.type == "confirm" else dialog.dismiss())

                try:
                    context = await browser.new_context(viewport=LAPTOP, locale="ja-JP")
                    page = await context.new_page()
                    page.set_default_timeout(10_000)
                    page.on("dialog", on_dialog)

                    async def shot(name: str, target=None) -> None:
                        await (target or page).wait_for_load_state("networkidle")
                        await (target or page).screenshot(path=shots / f"{name}.png", full_page=True)

                    await page.goto(f"{base}/console/login")
                    await fill_login(page, email, password)
                    await expect(page.get_by_role("heading", name="今日の状況")).to_be_visible()

                    # -- よくある質問: the unanswered question becomes a phrasing, in one click ----------
                    await page.locator(".sidebar").get_by_role("link", name="よくある質問").click()
                    await expect(page.get_by_role("heading", name="よくある質問", exact=True)).to_be_visible()
                    ask = page.locator("li.ask", has_text=UNANSWERED)
                    await expect(ask.locator(".ask-meta")).to_contain_text("2回")
                    hostile = page.locator("li.ask", has_text="<script>")
                    await expect(hostile.locator(".ask-text")).to_have_text(SCRIPT)  # shown as text
                    assert await page.locator("main script").count() == 0
                    await shot("30-faq")
                    await ask.get_by_role("combobox").select_option(label="ギフト包装はできますか")
                    # the new-entry link carries the question (checked before the list changes)
                    new_link = await ask.get_by_role("link", name="新しい質問として追加").get_attribute("href")
                    await ask.get_by_role("button", name="言い換えとして追加").click()
                    await expect(page.get_by_text("言い換えを追加しました。")).to_be_visible()
                    await expect(page.locator("li.ask", has_text=UNANSWERED)).to_have_count(0)  # taught: off the list

                    # ... and the bot answers that phrasing now, in the emulator
                    answer = await customers.say(hanako, UNANSWERED)
                    assert answer[0].startswith("ご注文時に「ギフト包装」を選択いただくと"), answer

                    await page.get_by_role("link", name="ギフト包装はできますか").click()
                    await expect(page.locator("textarea[name=alternates]")).to_have_value(UNANSWERED)
                    await shot("31-faq-entry")
                    await page.goto(base + new_link)
                    await expect(page.locator("input[name=question]")).to_have_value(UNANSWERED)
                    await page.locator("textarea[name=answer]").fill("紙袋は1枚無料でお付けしています。ご注文時の備考欄にご記入ください。")
                    await shot("32-faq-new")

                    # -- キーワード応答 ------------------------------------------------------------------
                    await page.locator(".sidebar").get_by_role("link", name="キーワード応答").click()
                    await page.get_by_label("キーワード", exact=True).fill("(a+)+")
                    await page.get_by_label("正規表現").check()
                    await page.get_by_role("textbox", name="テキストで返信").fill("はい")
                    await page.get_by_role("button", name="追加する").click()
                    await expect(page.locator(".field-error")).to_contain_text("キーワードを確認してください")
                    await page.get_by_label("部分一致").check()
                    await page.get_by_label("キーワード", exact=True).fill("駐車場")
                    await page.get_by_role("textbox", name="テキストで返信").fill("近隣のコインパーキングをご利用ください。")
                    await page.get_by_role("button", name="追加する").click()
                    await expect(page.get_by_text("キーワード応答を追加しました。")).to_be_visible()
                    await shot("33-keyword-rules")
                    await page.get_by_role("link", name="駐車場").click()
                    await expect(page.get_by_role("heading", name="駐車場")).to_be_visible()
                    await shot("33-keyword-rules-edit")

                    # -- 営業時間 ------------------------------------------------------------------------
                    await page.locator(".sidebar").get_by_role("link", name="営業時間").click()
                    await page.get_by_label("営業時間を設定する").check()
                    for day in ("月曜日", "火曜日", "水曜日", "木曜日", "金曜日", "土曜日"):
                        await page.get_by_label(f"{day} 開始 1").fill("10:00")
                        await page.get_by_label(f"{day} 終了 1").fill("20:00")
                    await page.get_by_label("土曜日 終了 1").fill("25:00")
                    await page.get_by_role("button", name="保存").click()
                    await expect(page.locator(".field-error")).to_contain_text("営業時間を確認してください")
                    await page.get_by_label("土曜日 終了 1").fill("18:00")
                    await page.locator("textarea[name=holidays]").fill("2026-12-31\n2027/1/1")
                    await page.get_by_role("button", name="保存").click()
                    await expect(page.get_by_text("営業時間を保存しました。")).to_be_visible()
                    await expect(page.locator("textarea[name=holidays]")).to_have_value("2026-12-31\n2027-01-01")
                    await shot("34-hours")

                    # -- 応答メッセージ: the privacy policy URL ---------------------------------------------
                    await page.locator(".sidebar").get_by_role("link", name="応答メッセージ").click()
                    await expect(page.get_by_text("仮の値（example.com）のまま")).to_be_visible()
                    await shot("35-texts")
                    privacy = page.locator("#privacy form").first
                    await privacy.locator("input[name=text]").fill("javascript:alert(1)")
                    await privacy.get_by_role("button", name="保存").click()
                    await expect(page.locator(".field-error")).to_contain_text("https:// で始まるURLを1つ入力してください")
                    await shot("36-text-invalid")
                    await page.locator("#text-ja-input").fill("https://shop.example.jp/privacy")
                    await page.locator("#text-ja").get_by_role("button", name="保存").click()
                    await expect(page.get_by_text("保存しました。次のメッセージから反映されます。")).to_be_visible()
                    await page.get_by_role("link", name="応答メッセージに戻る").click()
                    await expect(page.get_by_text("仮の値（example.com）のまま")).to_have_count(0)
                    await expect(page.locator("#privacy-en")).to_have_value("https://shop.example.jp/privacy")  # English follows
                    await page.get_by_role("link", name="会員登録・会員情報").click()
                    await page.get_by_role("link", name="registration_consent", exact=True).click()
                    await page.locator("#text-ja-input").fill("会員登録をはじめます。{url} {name}さま")
                    await page.locator("#text-ja").get_by_role("button", name="保存").click()
                    await expect(page.locator("#error-ja")).to_contain_text("{name} is not filled in by the bot")
                    await shot("37-text-edit")

                    # -- クーポン ----------------------------------------------------------------------
                    await page.locator(".sidebar").get_by_role("link", name="クーポン", exact=True).click()
                    await page.get_by_role("link", name="クーポンを作成").click()
                    await page.get_by_label("クーポン名").fill("誕生月 10%OFF")
                    await page.get_by_label("％引き").check()
                    await page.get_by_label("割引の額（円）または率（％）").fill("150")
                    await page.get_by_role("button", name="作成する").click()
                    await expect(page.locator(".field-error")).to_contain_text("割引の額を確認してください")
                    await shot("38-coupon-invalid")
                    await page.get_by_label("割引の額（円）または率（％）").fill("10")
                    await page.get_by_role("button", name="作成する").click()
                    await expect(page.get_by_text("クーポンを作成しました。")).to_be_visible()
                    await shot("39-coupon")
                    await page.get_by_role("link", name="クーポン一覧に戻る").click()
                    await expect(page.get_by_role("cell", name="10%OFF", exact=True)).to_be_visible()
                    await shot("40-coupons")

                    # -- リッチメニュー --------------------------------------------------------------------
                    await page.locator(".sidebar").get_by_role("link", name="リッチメニュー").click()
                    # `kizuna serve` in emulator mode sets the menus up by itself once it answers (as
                    # `make run` does), so the button reads either 設定する or もう一度設定する here.
                    await page.get_by_role("button", name=re.compile("^(リッチメニューを設定する|もう一度設定する)$")).click()
                    await expect(page.get_by_text("リッチメニューを設定しました。")).to_be_visible()
                    await expect(page.get_by_text("リッチメニューは設定済みです")).to_be_visible()
                    await shot("41-richmenu")
                    await expect(page.locator("[data-menu=registered] .status-ok")).to_be_visible()

                    # -- the audit log has it all -------------------------------------------------------
                    await page.locator(".sidebar").get_by_role("link", name="監査ログ").click()
                    for action in ("FAQ変更", "キーワード応答追加", "営業時間変更", "応答メッセージ変更", "クーポン作成", "リッチメニュー設定"):
                        await expect(page.locator("td", has_text=action).first).to_be_visible()
                    await shot("42-audit")

                    # -- English ----------------------------------------------------------------------
                    await page.goto(f"{base}/console/faq")
                    await page.locator(".sidebar").get_by_role("button", name="English").click()
                    await expect(page.get_by_role("heading", name="FAQ", exact=True)).to_be_visible()
                    await shot("43-faq-en")
                    await page.locator(".sidebar").get_by_role("button", name="日本語").click()

                    # -- a tablet -----------------------------------------------------------------------
                    tablet = await browser.new_context(viewport=TABLET, locale="ja-JP", storage_state=await context.storage_state())
                    tablet_page = await tablet.new_page()
                    await tablet_page.goto(f"{base}/console/faq")
                    await shot("44-tablet-faq", tablet_page)
                    assert await tablet_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                    await tablet.close()

                    # -- クーポン利用: support at the till, with a camera that shows Ken's coupon ------------
                    code, shown = await _code_for(sessions, hanako, "山田 花子"), await _code_for(sessions, ken, "佐藤 健")
                    camera = tmp_path / "camera.y4m"
                    camera.write_bytes(y4m(qr_frame(shown)))
                    till_browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
                        *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                        f"--use-file-for-fake-video-capture={camera}"])
                    till = await (await till_browser.new_context(viewport=LAPTOP, locale="ja-JP")).new_page()
                    till.set_default_timeout(10_000)
                    till.on("dialog", on_dialog)
                    await till.goto(f"{base}/console/login")
                    await fill_login(till, "till@example.com", SUPPORT_PASSWORD)
                    await expect(till.get_by_role("link", name="キーワード応答")).to_have_count(0)
                    await till.locator(".sidebar").get_by_role("link", name="クーポン利用").click()
                    await shot("45-redeem", till)
                    await till.get_by_placeholder("KZN-XXXX-XXXX-XXXX").fill(code.lower().replace("-", " "))
                    await till.get_by_role("button", name="確認する").click()
                    await expect(till.get_by_text("このクーポンを利用済みにしますか？")).to_be_visible()
                    await expect(till.locator(".ticket")).to_contain_text("500円OFF")
                    await expect(till.locator(".ticket")).to_contain_text("山田 花子")
                    await shot("46-redeem-confirm", till)
                    await till.get_by_role("button", name="利用済みにする").click()
                    await expect(till.get_by_text("クーポンを利用済みにしました")).to_be_visible()
                    await shot("47-redeem-done", till)
                    await till.get_by_placeholder("KZN-XXXX-XXXX-XXXX").fill(code)
                    await till.get_by_role("button", name="確認する").click()
                    await expect(till.get_by_text("このクーポンは利用済みです")).to_be_visible()
                    await shot("48-redeem-twice", till)
                    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
                    await till.get_by_placeholder("KZN-XXXX-XXXX-XXXX").fill(typo)
                    await till.get_by_role("button", name="確認する").click()
                    await expect(till.get_by_text("コードに入力間違いがあります")).to_be_visible()
                    await shot("49-redeem-typo", till)
                    await till.get_by_role("button", name="カメラで読み取る").click()  # Ken holds up his phone
                    await expect(till.get_by_text("このクーポンを利用済みにしますか？")).to_be_visible()
                    await expect(till.locator(".ticket")).to_contain_text("佐藤 健")
                    await shot("50-redeem-camera", till)

                    # support reads the FAQ, without the buttons that change it
                    await till.locator(".sidebar").get_by_role("link", name="よくある質問").click()
                    await expect(till.get_by_role("link", name="質問を追加")).to_have_count(0)
                    await expect(till.get_by_role("button", name="言い換えとして追加")).to_have_count(0)
                    await shot("51-support-faq", till)
                    response = await till.goto(f"{base}/console/coupons")
                    assert response.status == 403
                    assert [kind for kind, _ in dialogs if kind != "confirm"] == []
                    await till_browser.close()
                finally:
                    await browser.close()
    keep_screenshots(shots)
