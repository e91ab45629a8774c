"""Issue 15's "Done when", in a real browser (Debian's Chromium through Playwright): a marketer
schedules a coupon campaign with a link and a control group to a saved segment two minutes ahead
in the console, watches the progress bar, the message arrives in the emulator, the customer taps
the tracked link, the coupon is redeemed at the till screen, and the campaign's results count the
tap and the redemption beside the control group.

The clock moves, nobody waits two minutes: the app's clock (`services.clock`, which the scheduler
and the senders read) and the console's request time (`context.utcnow`, which the till's
redemption reads) are one shifted clock, so the send, the coupon's grant and its redemption
share one timeline. A test send to the shop's own account comes first. Screenshots: 89- onward (KIZUNA_CONSOLE_SCREENSHOTS)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import sqlalchemy as sa

import kizuna.console.context
from kizuna.appkeys import SERVICES
from kizuna.bot.keys import SESSIONS
from kizuna.campaigns import segments
from kizuna.storage import coupons
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, InboundEvent
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.test_console_browser import CHROMIUM, LAPTOP, TABLET, admin_page, full_shot, keep_screenshots, like_make_run

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")

FRIENDS = [f"友だち{n:02d}" for n in range(14)]
HOLDOUT = 30  # % of the segment get nothing (14 friends: both groups are non-empty)
LINK = "https://shop.example/winter"
SHOP_ZONE = ZoneInfo("Asia/Tokyo")


class ShiftedClock:
    """The real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self):
        return utcnow() + self.offset


async def friends_follow(base: str, sessions) -> dict[str, str]:
    """Friends follow through the emulator's own API; {name: LINE user id} once all are stored."""
    users = {}
    async with aiohttp.ClientSession(base_url=base) as http:
        for name in FRIENDS:
            async with http.post("/emulator/api/users", json={"display_name": name}) as response:
                users[name] = (await response.json())["user_id"]
            async with http.post(f"/emulator/api/users/{users[name]}/follow") as response:
                assert response.status == 200

    async def processed() -> bool:
        async with sessions() as session:
            pending = (await session.execute(sa.select(sa.func.count()).select_from(InboundEvent)
                                             .where(InboundEvent.status == "pending"))).scalar_one()
            followed = (await session.execute(sa.select(sa.func.count()).select_from(Customer)
                                              .where(Customer.followed.is_(True)))).scalar_one()
            return pending == 0 and followed == len(FRIENDS)

    await eventually(processed, timeout=30, what="the friends' follows to be processed")
    return users


async def campaign_messages(base: str, user_id: str) -> list[dict]:
    """What the campaign sent this customer (pushes after the follow greeting), from the emulator's chat."""
    async with aiohttp.ClientSession(base_url=base) as http:
        async with http.get(f"/emulator/api/users/{user_id}/timeline") as response:
            items = (await response.json())["items"]
    return [item["message"] for item in items if item["side"] == "bot" and item.get("via") == "push"]


def sent_by_campaign(messages: list[dict]) -> list[dict]:
    """Leaves out a test send's messages (their link is not tracked)."""
    return [message for message in messages if LINK not in message.get("text", "")]


async def test_a_coupon_campaign_scheduled_two_minutes_ahead_is_sent_tapped_redeemed_and_measured(
        database_url, redis_prefix, redis_cleanup, tmp_path, monkeypatch):
    from playwright.async_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    clock = ShiftedClock()
    monkeypatch.setattr(kizuna.console.context, "utcnow", clock)
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        runner.app[SERVICES].clock = clock
        sessions = runner.app[SESSIONS]
        users = await friends_follow(base, sessions)
        async with transaction(sessions) as session:
            await segments.create(session, "LINE友だち（全員）", {"field": "followed", "op": "eq", "value": True}, now=utcnow())
            await coupons.create_coupon(session, {"title": "冬の500円OFF", "discount_type": "amount", "discount_value": 500,
                                                  "valid_days": 14})
        async with admin_page(base, sessions) as (page, errors):
            # -- the editor: the segment, a message with a link, the coupon, a control group, two minutes ahead --
            await page.goto(f"{base}/console/campaigns/new")
            await page.get_by_label("配信名（管理用）").fill("冬のクーポン配信")
            await page.get_by_label("配信先").select_option(label="LINE友だち（全員）")
            await expect(page.locator("[data-estimate-count]")).to_have_text(f"{len(FRIENDS)}人")
            await page.get_by_label("メッセージ1の本文", exact=True).fill(f"{{name}}さん、冬のセールです。\n会場はこちら {LINK}")
            coupon_card = page.locator("[data-preview-messages='m'] ~ .lp-after [data-preview-coupon]")
            await expect(coupon_card).to_be_hidden()
            await page.get_by_label("クーポン", exact=True).select_option(label="冬の500円OFF")
            await expect(coupon_card).to_be_visible()
            await expect(coupon_card).to_contain_text("冬の500円OFF")
            await expect(coupon_card).to_contain_text("お客様ごとのクーポンコード")
            await expect(page.get_by_label("リンクのタップを計測する")).to_be_checked()  # on by default
            await page.get_by_label("効果測定用の対照群（配信しないお客様の割合）").fill(str(HOLDOUT))
            await expect(page.locator("[data-estimate-detail]")).to_contain_text("対照群 約")
            await page.get_by_text("日時を指定").click()
            # Two minutes ahead, to the minute the picker offers (rounded up: never in the past).
            ahead = clock() + timedelta(minutes=2)
            send_at = (ahead + timedelta(seconds=59)).astimezone(SHOP_ZONE).replace(second=0, microsecond=0)
            await page.locator("input[name=send_at]").fill(send_at.strftime("%Y-%m-%dT%H:%M"))
            await page.get_by_label("配信停止時間帯を守る").uncheck()  # the test must not depend on the hour it runs at
            await full_shot(page, shots / "89-campaign-editor-coupon.png")
            await page.get_by_role("button", name="配信を予約する").click()

            # -- the campaign's page: scheduled, waiting; then its time comes ---------------------------------
            await expect(page.get_by_text("配信を予約しました。")).to_be_visible()
            await expect(page.locator("[data-status-badge]")).to_have_text("予約済み")
            await expect(page.locator("[data-progress-text]")).to_have_text("配信開始前")
            await expect(page.locator(".preview-card [data-preview-coupon]")).to_contain_text("冬の500円OFF")
            await full_shot(page, shots / "90-campaign-coupon-scheduled.png")
            # A test send to the shop's own LINE account first (here 友だち00's): names filled, the link as it is.
            tester = users[FRIENDS[0]]
            await page.get_by_label("送信先のLINEユーザーID").fill(tester)
            await page.get_by_role("button", name="テスト配信する").click()
            await expect(page.get_by_text("テスト配信を送りました。")).to_be_visible()

            async def test_arrived() -> bool:
                return any(LINK in message.get("text", "") for message in await campaign_messages(base, tester))

            await eventually(test_arrived, what="the test send in the emulator")
            await full_shot(page, shots / "91-campaign-test-sent.png")
            clock.offset = (send_at - utcnow()) + timedelta(seconds=5)  # two minutes pass, for the app
            # The page follows the start and the send by itself (it polls), without a reload by the test.
            await expect(page.locator("[data-status-badge]")).to_have_text("配信完了", timeout=30_000)
            sent = int(await page.locator('[data-stat="sent"]').inner_text())
            control = int(await page.locator('[data-stat="control"]').inner_text())
            assert sent + control == len(FRIENDS) and sent > 0 and control > 0, (sent, control)
            await expect(page.locator("[data-progress-text]")).to_have_text(f"{sent} / {sent}人に送信")
            assert await page.locator("[data-progress]").evaluate("bar => bar.value === bar.max")
            await expect(page.locator('[data-result="clicks"]')).to_have_text("0")
            await full_shot(page, shots / "92-campaign-coupon-sent.png")

            # -- the customer's LINE: the message with a tracked link, and their own coupon -----------------
            received = {name: sent_by_campaign(await campaign_messages(base, user_id)) for name, user_id in users.items()}
            reached = [name for name, messages in received.items() if messages]
            assert len(reached) == sent, received
            customer = next(name for name in reached if users[name] != tester)  # a chat without the test send
            text, card = received[customer]
            assert text["type"] == "text" and card["type"] == "flex" and "冬の500円OFF" in card["altText"]
            assert text["text"].startswith(f"{customer}さん、冬のセールです。") and LINK not in text["text"] and "/r/" in text["text"]
            code = next(item["text"] for item in card["contents"]["body"]["contents"] if item.get("size") == "xl")
            chat = await page.context.new_page()
            await chat.set_viewport_size(LAPTOP)
            await chat.goto(f"{base}/emulator/")
            await chat.get_by_role("button", name=customer).click()
            await expect(chat.get_by_text(f"{customer}さん、冬のセールです。")).to_be_visible()
            await expect(chat.get_by_text(code)).to_be_visible()
            await chat.locator("#richmenu-toggle").click()  # the rich menu folded: the chat shows more
            await chat.get_by_text(code).scroll_into_view_if_needed()
            await chat.screenshot(path=shots / "93-emulator-coupon-campaign.png")
            await chat.close()

            # The customer taps the link: a 302 to the shop's page, counted.
            tracked = text["text"].split("会場はこちら ")[1].split()[0]
            async with aiohttp.ClientSession() as http:
                async with http.get(tracked, allow_redirects=False) as response:
                    assert (response.status, response.headers["Location"]) == (302, LINK)

            # -- the till: the customer shows the coupon, the clerk redeems it ---------------------------
            await page.locator(".sidebar").get_by_role("link", name="クーポン利用").click()
            await page.get_by_label("クーポンコード").fill(code)
            await page.get_by_role("button", name="確認する").click()
            await expect(page.get_by_text("このクーポンを利用済みにしますか？")).to_be_visible()
            await expect(page.locator("main")).to_contain_text(customer)
            await full_shot(page, shots / "94-redeem-campaign-coupon.png")
            await page.get_by_role("button", name="利用済みにする").click()
            await expect(page.get_by_text("クーポンを利用済みにしました")).to_be_visible()
            await full_shot(page, shots / "95-redeem-campaign-coupon-done.png")

            # -- the results: the tap and the redemption, against the control group -------------------------
            await page.locator(".sidebar").get_by_role("link", name="配信", exact=True).click()
            await page.get_by_role("link", name="冬のクーポン配信").click()
            await expect(page.locator('[data-result="clicks"]')).to_have_text("1")
            await expect(page.locator('[data-result="clickers"]')).to_have_text("1")
            await expect(page.locator('[data-result="click_rate"]')).to_have_text(f"{100 / sent:.1f}%")
            await expect(page.locator('[data-result="redeemed"]')).to_have_text("1")
            treated_row = page.locator('[data-group="treated"]')
            control_row = page.locator('[data-group="control"]')
            await expect(treated_row.locator('[data-cell="size"]')).to_have_text(str(sent))
            await expect(treated_row.locator('[data-cell="redeemed"]')).to_have_text("1")
            await expect(control_row.locator('[data-cell="size"]')).to_have_text(str(control))
            await expect(control_row.locator('[data-cell="redeemed"]')).to_have_text("0")
            await expect(page.locator("[data-uplift-value]")).to_have_text("+0.0pt")  # nobody ordered yet
            await expect(page.locator("[data-uplift-interval]")).to_have_text("対照群が30人未満のため区間なし")
            drawn = await page.evaluate("""() => {
                const chart = window.Chart && Chart.getChart(document.querySelector('[data-results-chart]'));
                return chart ? chart.data.datasets.map(set => [set.label, set.data]) : null;
            }""")
            assert drawn == [["配信した人", [0, round(100 / sent, 1)]], ["対照群（配信なし）", [0, 0]]], drawn
            await full_shot(page, shots / "96-campaign-coupon-results.png")
            await page.locator(".sidebar").get_by_role("button", name="English").click()
            await expect(page.locator("[data-uplift-interval]")).to_have_text("No interval: the control group has fewer than 30")
            await full_shot(page, shots / "97-campaign-coupon-results-en.png")
            await page.locator(".sidebar").get_by_role("button", name="日本語").click()
            await page.set_viewport_size(TABLET)  # the results on a tablet: the table scrolls inside its card
            await expect(page.locator("[data-uplift-interval]")).to_have_text("対照群が30人未満のため区間なし")
            await full_shot(page, shots / "98-tablet-campaign-coupon-results.png")
            await page.set_viewport_size(LAPTOP)
            assert errors == [], errors
    keep_screenshots(shots)
