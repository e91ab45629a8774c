"""The chat page in a real (headless) Chromium, against a tiny fake bot.

Skipped only when Debian's Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from linebot.v3.messaging import (
    AsyncMessagingApi,
    DatetimePickerAction,
    FlexBox,
    FlexBubble,
    FlexButton,
    FlexMessage,
    FlexSeparator,
    FlexText,
    MessageAction,
    PostbackAction,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    TextMessage,
)

from kizuna.emulator import Emulator
from kizuna.emulator.testing import FakeBot

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
XSS = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 5000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


def bot_replies(line: AsyncMessagingApi):
    async def on_event(event: dict) -> None:
        message = event.get("message") or {}
        if event["type"] != "message" or message.get("type") != "text":
            return
        if message["text"] != "こんにちは":
            return
        await line.reply_message(ReplyMessageRequest(reply_token=event["replyToken"], messages=[
            TextMessage(
                text=f"いらっしゃいませ {XSS}",
                quick_reply=QuickReply(items=[
                    QuickReplyItem(action=PostbackAction(label="会員登録", data="action=register", display_text="会員登録します")),
                    QuickReplyItem(action=MessageAction(label="営業時間", text="営業時間は?")),
                    QuickReplyItem(action=DatetimePickerAction(label="誕生日", data="action=birthday", mode="date")),
                ]),
            ),
            FlexMessage(alt_text="クーポン", contents=FlexBubble(body=FlexBox(layout="vertical", contents=[
                FlexText(text="10% OFF クーポン", weight="bold", size="xl", color="#06c755"),
                FlexSeparator(),
                FlexBox(layout="horizontal", contents=[FlexText(text="期限"), FlexText(text="今月末", align="end")]),
                FlexButton(style="primary", action=PostbackAction(label="クーポンを使う", data="action=use_coupon")),
            ]))),
        ]))

    return on_event


async def test_chat_page_in_chromium(running, emu: Emulator, bot: FakeBot, line: AsyncMessagingApi, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    bot.on_event = bot_replies(line)
    dialogs: list[str] = []
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 800}, locale="ja-JP")
            page.set_default_timeout(TIMEOUT_MS)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(running.url("/"))

            # A person creates a customer (with a hostile name) and is followed in.
            await page.fill("#new-user-name", XSS)
            await page.click("#new-user-button")
            await expect(page.locator("#chat-status")).to_have_text("友だち")
            await expect(page.locator("#chat-title")).to_have_text(XSS)
            await bot.wait_for_events(1)
            assert bot.events[0]["type"] == "follow"

            await page.fill("#text-input", "こんにちは")
            await page.press("#text-input", "Enter")
            quick = page.locator(".quick-reply", has_text="会員登録")
            await expect(quick).to_be_visible()
            await expect(page.locator(".bot-bubble", has_text="いらっしゃいませ")).to_contain_text(XSS)
            await expect(page.locator(".via-reply").first).to_have_text("reply")
            await expect(page.locator(".flex-bubble")).to_contain_text("10% OFF クーポン")
            if os.environ.get("KIZUNA_SCREENSHOTS"):
                await page.screenshot(path=str(tmp_path / "chat.png"))

            await quick.click()
            events = await bot.wait_for_events(3)
            assert events[2]["type"] == "postback"
            assert events[2]["postback"]["data"] == "action=register"
            await expect(page.locator(".user-bubble", has_text="会員登録します")).to_be_visible()
            await expect(page.locator("#quick-replies")).to_be_hidden()

            await page.locator(".flex-button", has_text="クーポンを使う").click()
            events = await bot.wait_for_events(4)
            assert events[3]["postback"]["data"] == "action=use_coupon"

            # Nothing the bot or the user typed became markup.
            assert await page.locator("img[src='x']").count() == 0
        finally:
            await browser.close()
    assert dialogs == []
    assert errors == []


async def test_datetime_picker_sends_params(running, emu: Emulator, bot: FakeBot, line: AsyncMessagingApi) -> None:
    from playwright.async_api import async_playwright, expect

    bot.on_event = bot_replies(line)
    user = emu.add_user("日付")
    await emu.follow(user.user_id)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            await page.goto(running.url("/"))
            await page.locator(".user-button", has_text="日付").click()
            await expect(page.locator("#chat-status")).to_have_text("友だち")
            await page.fill("#text-input", "こんにちは")
            await page.click("#send-button")
            await page.locator(".quick-reply", has_text="誕生日").click()
            await expect(page.locator("#picker-panel")).to_be_visible()
            assert await page.locator("#picker-input").get_attribute("type") == "date"
            await page.fill("#picker-input", "1990-01-31")
            await page.locator("#picker-form button[type=submit]").click()
            events = await bot.wait_for_events(3)
            assert events[-1]["postback"] == {"data": "action=birthday", "params": {"date": "1990-01-31"}}
        finally:
            await browser.close()
