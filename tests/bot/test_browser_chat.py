"""What a new user does after `make run`: open the emulator in a browser, follow the
bot, write to it, see the greeting and the reply, ask a question of the example FAQ and
answer 解決しましたか (the answer's own quick replies); the API shows the timeline.

Runs Kizuna exactly as `kizuna serve` does in embedded mode (emulator mounted at
/emulator, no LINE credentials), in Debian's Chromium through Playwright.
"""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kizuna.bot.app import create_app
from kizuna.bot.cli import DEMO_FAQ
from kizuna.bot.keys import SESSIONS
from kizuna.bot.settings import Settings
from kizuna.storage import tokens
from kizuna.storage.db import transaction
from tests.conftest import SECRET_KEY, TEST_REDIS_URL

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_new_user_follows_and_chats_in_the_emulator(database_url, redis_prefix, redis_cleanup):
    from playwright.async_api import async_playwright, expect

    port = _free_port()
    settings = Settings(_env_file=None, secret_key=SECRET_KEY, database_url=database_url, port=port,
                        redis_url=TEST_REDIS_URL, redis_prefix=redis_prefix, sweep_interval_seconds=0.5)
    assert settings.emulator  # no LINE credentials: the emulator is mounted, as with `make run`
    runner = web.AppRunner(create_app(settings, run_worker=True))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with transaction(runner.app[SESSIONS]) as session:
            admin = (await tokens.create(session, name="browser test", role="admin"))[1]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(locale="ja-JP")
                page.set_default_timeout(10_000)
                await page.goto(f"http://127.0.0.1:{port}/")  # redirects to the emulator
                await page.fill("#new-user-name", "山田 花子")
                await page.click("#new-user-button")  # creates the customer and follows the bot
                await expect(page.locator(".bot-bubble", has_text="友だち追加ありがとうございます")).to_be_visible()

                await page.fill("#text-input", "こんにちは、はじめまして")
                await page.press("#text-input", "Enter")
                await expect(page.locator(".user-bubble", has_text="こんにちは、はじめまして")).to_be_visible()
                await expect(page.locator(".bot-bubble").last).not_to_contain_text("はじめまして")

                # the example FAQ `make run` loads (kizuna demo): a question in the customer's words
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as api:
                    async with api.post(f"http://127.0.0.1:{port}/api/v1/faq/import", data=DEMO_FAQ.read_bytes(),
                                        headers={"Content-Type": "text/csv"}) as response:
                        assert response.status == 200, await response.text()
                await page.fill("#text-input", "送料っていくらかかる？")
                await page.press("#text-input", "Enter")
                await expect(page.locator(".bot-bubble").last).to_contain_text("送料は全国一律550円です")  # one bubble
                await page.locator(".quick-reply", has_text="解決しました").click()
                await expect(page.locator(".bot-bubble").last).to_contain_text("お役に立ててよかったです")
            finally:
                await browser.close()

        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {admin}"}) as api:
            async with api.get("/api/v1/customers") as response:
                [customer] = (await response.json())["items"]
            assert customer["display_name"] == "山田 花子" and customer["followed"]
            async with api.get(f"/api/v1/customers/{customer['id']}/interactions") as response:
                timeline = await response.json()
        kinds = [(item["direction"], item["kind"]) for item in reversed(timeline["items"])]
        assert ("in", "follow") in kinds and ("in", "message.text") in kinds
        assert kinds.count(("out", "message.text")) >= 4  # greeting, reply, answer (with 解決しましたか), thanks
        assert ("sys", "inquiry.answered") in kinds and ("sys", "inquiry.feedback") in kinds
    finally:
        await runner.cleanup()
