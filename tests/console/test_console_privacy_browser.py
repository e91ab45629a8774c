"""プライバシー in a real browser (Debian's Chromium through Playwright), as the shop's admin: a
customer registers and withdraws (退会) in the LINE emulator's chat; the admin opens the privacy
page, sees the first notice version with its counts, is told what is wrong with an http:// URL,
publishes a new version, chooses to keep registration data until the retention purge, and reads
the customer's consent history on the customer page. Screenshots: privacy-* (KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.bot.keys import SESSIONS
from kizuna.storage import consents
from kizuna.storage.models import Customer, WithdrawalData
from tests.conftest import eventually
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")

REGISTRATION = ["会員登録", "同意する", "山田 花子", "1990/01/31", "女性", "東京都", "スキップ", "スキップ", "受け取る", "登録する"]


async def register_and_withdraw(base: str, sessions) -> int:
    """A customer registers, then withdraws, in the emulator's chat (its own API, as a person in its
    page would). Returns the customer id once the withdrawal is stored."""
    async with aiohttp.ClientSession(base_url=base) as http:
        async with http.post("/emulator/api/users", json={"display_name": "山田 花子"}) as response:
            user_id = (await response.json())["user_id"]
        async with http.post(f"/emulator/api/users/{user_id}/follow") as response:
            assert response.status == 200
        for text in REGISTRATION:
            async with http.post(f"/emulator/api/users/{user_id}/text", json={"text": text}) as response:
                assert response.status == 200

        async def customer() -> Customer | None:
            async with sessions() as session:
                return (await session.execute(sa.select(Customer).where(Customer.line_user_id == user_id))).scalar_one_or_none()

        async def registered() -> bool:
            row = await customer()
            return row is not None and row.registered

        await eventually(registered, timeout=30, what="the registration in the emulator")
        for text in ("退会", "はい"):
            async with http.post(f"/emulator/api/users/{user_id}/text", json={"text": text}) as response:
                assert response.status == 200

        async def withdrawn() -> bool:
            row = await customer()
            return row.withdrawn_at is not None

        await eventually(withdrawn, timeout=30, what="the withdrawal in the emulator")
        return (await customer()).id


async def test_an_admin_publishes_a_notice_sets_the_withdrawal_policy_and_reads_a_consent_history(
        database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        customer_id = await register_and_withdraw(base, sessions)
        async with admin_page(base, sessions) as (page, errors):
            await page.locator(".sidebar").get_by_role("link", name="プライバシー").click()
            await expect(page.get_by_role("heading", name="プライバシー", exact=True)).to_be_visible()
            await expect(page.get_by_text("現在の版：1")).to_be_visible()
            row = page.locator("tbody tr").first
            # The customer accepted version 1 and withdrew: 0 members on it now, 3 grants, 3 withdrawals.
            await expect(row.locator("td").nth(3)).to_have_text("0")
            await expect(row.locator("td").nth(4)).to_have_text("3")
            await expect(row.locator("td").nth(5)).to_have_text("3")
            await full_shot(page, shots / "privacy-01-page.png")

            # An http:// address is refused at its field; nothing is published.
            await page.locator("input[name=version]").fill("2027-04")
            await page.locator("input[name=url]").fill("http://shop.example.jp/privacy")
            await page.get_by_role("button", name="この内容で公開する").click()
            await expect(page.locator("#error-url")).to_contain_text("https:// で始まるURLを入力してください")
            await full_shot(page, shots / "privacy-02-invalid-url.png")

            await page.locator("input[name=url]").fill("https://shop.example.jp/privacy/2027-04")
            await page.locator("textarea[name=purpose_marketing]").fill("セールやクーポンのお知らせ（ご希望の方のみ）")
            await page.get_by_role("button", name="この内容で公開する").click()
            await expect(page.get_by_text("新しい版を公開しました。")).to_be_visible()
            await expect(page.get_by_text("現在の版：2027-04")).to_be_visible()

            await page.get_by_text("保存期間まで残す").click()
            await page.locator("form[action$='/privacy/settings'] button[type=submit]").click()
            await expect(page.get_by_text("退会時の扱いを保存しました。")).to_be_visible()
            await full_shot(page, shots / "privacy-03-published.png")

            # The customer page re-reads its regions once its live stream is connected (live.js):
            # wait for that re-read, so the section is not swapped under the screenshot.
            async with page.expect_response(lambda response: response.request.headers.get("x-kizuna-refresh") == "1") as refreshed:
                await page.goto(f"{base}/console/customers/{customer_id}")
            await refreshed.value
            await expect(page.locator("html")).to_have_attribute("data-live", "connected")
            section = page.locator("#consents")
            await expect(section.get_by_role("heading", name="同意の記録")).to_be_visible()
            await expect(section.locator("li")).to_have_count(6)
            await expect(section.locator("li").first).to_contain_text("撤回")
            await expect(section).to_contain_text("退会日時")
            await section.scroll_into_view_if_needed()
            await page.screenshot(path=shots / "privacy-04-customer-consents.png")
            await section.screenshot(path=shots / "privacy-05-consents-section.png")

            await page.goto(f"{base}/console/privacy")
            await page.locator(".sidebar").get_by_role("button", name="English").click()
            await expect(page.get_by_text("Current version: 2027-04")).to_be_visible()
            await full_shot(page, shots / "privacy-06-page-en.png")
            # The one refusal on purpose (the http:// address) is the only error the page logged.
            assert [error for error in errors if "400 (Bad Request)" not in error] == []

        async with sessions() as session:
            notice = await consents.current_notice(session)
            assert (notice.version, notice.url) == ("2027-04", "https://shop.example.jp/privacy/2027-04")
            assert notice.purposes["marketing"] == "セールやクーポンのお知らせ（ご希望の方のみ）"
            assert await consents.withdrawal_data(session) == WithdrawalData.KEEP
    keep_screenshots(shots)
