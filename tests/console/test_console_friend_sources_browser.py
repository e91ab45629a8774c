"""流入経路 in a real browser (Debian's Chromium through Playwright), as `make run` runs Kizuna
(the emulator mounted, its LINE Login included): a marketer creates a source, a customer opens its
link on their phone, logs in on the emulated LINE Login screen with 「友だち追加」 ticked and lands
on the thank-you page; the source then shows 1 follow, and the analytics page draws follows per
source. Screenshots: 70- onward (KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from kizuna.bot.keys import SESSIONS
from kizuna.storage import audit, friend_sources
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer
from kizuna.storage.types import utcnow
from tests.console.test_console_browser import CHROMIUM, admin_page, full_shot, keep_screenshots, like_make_run
from tests.conftest import eventually

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
PHONE = {"width": 390, "height": 844}
# name, tag, (followed, blocked) people it brought
MORE_SOURCES = [("Instagram", "SNS", 14, 2), ("チラシ（駅前）", None, 6, 1), ("<b>レジ横POP</b>", "店頭", 9, 0)]


async def seed_sources(sessions) -> None:
    """More sources with friends they brought (some of them blocked since), as logins recorded them."""
    now = utcnow()
    async with transaction(sessions) as session:
        for name, tag, brought, blocked in MORE_SOURCES:
            source = await friend_sources.create(session, name, tag, actor=audit.CLI)
            source.clicks = brought * 3
            for number in range(brought):
                customer = Customer(line_user_id="U" + secrets.token_hex(16), display_name=f"{name}{number}", followed=True,
                                    followed_at=now, blocked=number < blocked)
                session.add(customer)
                await session.flush()
                await friend_sources.record_login(session, source, customer.line_user_id, friendship_changed=True, is_friend=True, now=now)


async def test_a_source_brings_a_friend_in_the_browser(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        await seed_sources(sessions)
        async with admin_page(base, sessions) as (page, errors):
            await page.locator(".sidebar").get_by_role("link", name="流入経路").click()
            await expect(page.get_by_role("heading", name="流入経路", exact=True).first).to_be_visible()
            await page.get_by_label("経路名").fill("店頭POP")
            await page.get_by_label("付与するタグ（任意）").fill("店頭")
            await page.get_by_role("button", name="作成する").click()
            await expect(page.get_by_text("流入経路を作成しました。")).to_be_visible()
            await expect(page.get_by_text("<b>レジ横POP</b>")).to_be_visible()  # escaped: shown as text
            row = page.locator("tr", has_text="店頭POP").filter(has_not_text="レジ横")
            link = await row.locator("[data-url]").text_content()
            assert link.startswith(f"{base}/f/")

            # a customer opens the link on their phone and goes through LINE Login
            phone = await (await page.context.browser.new_context(viewport=PHONE, locale="ja-JP")).new_page()
            await phone.goto(link)
            await expect(phone.get_by_text("を友だち追加")).to_be_visible()
            await phone.locator("input[name=display_name]").fill("山田 花子")
            await phone.locator("input[name=user_id][value='']").check()
            await phone.screenshot(path=shots / "71-friend-source-line-login.png", full_page=True)
            await phone.get_by_role("button", name="許可する").click()
            await expect(phone.get_by_role("heading", name="友だち追加ありがとうございます")).to_be_visible()
            await phone.screenshot(path=shots / "72-friend-source-thanks.png", full_page=True)

            async def followed() -> bool:
                await page.reload()
                return (await row.locator("[data-follows]").text_content()).strip() == "1"

            await eventually(followed, what="the follow counted on the page")
            assert (await row.locator("[data-clicks]").text_content()).strip() == "1"
            await full_shot(page, shots / "70-friend-sources.png")

            await page.locator(".sidebar").get_by_role("link", name="分析").click()
            await expect(page.get_by_role("heading", name="流入経路別の友だち追加数")).to_be_visible()
            chart = await page.evaluate("""() => {
                const canvas = document.querySelector('canvas[data-chart=sources]');
                const chart = Chart.getChart(canvas);
                const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let painted = 0;
                for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
                return [chart.data.labels, chart.data.datasets.map(set => set.data), painted];
            }""")
            labels, data, painted = chart
            assert labels == ["Instagram", "チラシ（駅前）", "<b>レジ横POP</b>", "店頭POP"]
            assert data == [[14, 6, 9, 1], [2, 1, 0, 0]] and painted > 2000
            await page.locator("canvas[data-chart=sources]").scroll_into_view_if_needed()
            await full_shot(page, shots / "73-analytics-friend-sources.png")
            assert not errors, errors
    keep_screenshots(shots)
