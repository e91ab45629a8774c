"""配信 part 2 over real HTTP (the LINE emulator as LINE, the workers running): the editor's coupon
picker and tracked-links switch reach the campaign and the customers (each their own code, a tracked
link), an inactive coupon is refused beside its field, a test send reaches only the staff's own
LINE account and says plainly who is not a friend, and the results show taps and redemptions."""

from __future__ import annotations

import html
import re

import aiohttp

from kizuna.campaigns import attribution
from kizuna.campaigns.attribution import uplift
from kizuna.storage import coupons
from kizuna.storage.db import transaction
from kizuna.storage.models import Campaign
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.test_console_campaigns import befriend, campaign_texts, form, marketer, saved_segment, stored_campaigns

LINK = "https://shop.example/winter"


async def a_coupon(console, title: str = "冬の500円OFF", *, active: bool = True) -> int:
    async with transaction(console.sessions) as session:
        coupon = await coupons.create_coupon(session, {"title": title, "discount_type": "amount", "discount_value": 500,
                                                       "valid_days": 14, "active": active})
    return coupon.id


async def completed(console, campaign_id: int) -> None:
    async def done() -> bool:
        async with console.sessions() as session:
            return (await session.get(Campaign, campaign_id)).status == "completed"

    await eventually(done, what="the campaign completed")


async def test_a_coupon_campaign_with_a_tracked_link_from_the_editor(console):
    hanako, taro = await befriend(console, "花子", "太郎")
    segment_id = await saved_segment(console)
    coupon_id = await a_coupon(console)
    retired = await a_coupon(console, "終了したクーポン", active=False)
    browser = await marketer(console)

    response, page = await browser.get("/console/campaigns/new")
    assert f'<option value="{coupon_id}">冬の500円OFF</option>' in page and "終了したクーポン" not in page  # active ones only
    assert re.search(r'name="track_links" checked', page)  # tracked links: on unless switched off
    # the preview shows the coupon card after the messages, without a code (each customer gets their own)
    response, page = await browser.post("/console/campaigns/new", form(segment_id, action="refresh", coupon=str(coupon_id)))
    assert '<div class="lp-line lp-coupon-line" data-preview-coupon>' in page  # shown (not hidden)
    assert "<strong data-preview-coupon-title>冬の500円OFF</strong>" in page and "お客様ごとのクーポンコード" in page

    # an inactive coupon is refused beside the picker, and nothing is saved
    response, page = await browser.post("/console/campaigns/new", form(segment_id, coupon=str(retired), track_links="on"))
    assert response.status == 400 and "有効なクーポンを選んでください" in html.unescape(page)
    assert re.search(r'<select name="coupon" data-coupon\s+id="field-coupon"[^>]*aria-invalid="true"', page)
    assert await stored_campaigns(console) == []

    response, _ = await browser.post("/console/campaigns/new", form(
        segment_id, quiet_hours="", coupon=str(coupon_id), track_links="on", m0_text=f"冬のセール会場はこちら {LINK}"))
    assert response.status == 303
    [campaign] = await stored_campaigns(console)
    assert (campaign.coupon_id, campaign.track_links) == (coupon_id, True)
    await completed(console, campaign.id)

    codes, links = {}, {}
    for user in (hanako, taro):
        [text, card] = [m.message for m in console.kizuna.emulator.messages_to(user.user_id) if m.via == "push"]
        assert text["text"].startswith("冬のセール会場はこちら http") and LINK not in text["text"]
        links[user.user_id] = text["text"].split("/r/")[1].split()[0]
        codes[user.user_id] = next(item["text"] for item in card["contents"]["body"]["contents"] if item.get("size") == "xl")
    assert len(set(codes.values())) == 2  # each their own code

    # 花子 taps the link; at the till her code is redeemed (the API's till, as a POS would)
    async with aiohttp.ClientSession() as http:
        # (the fixture's public URL is not where this test server listens: the token is what matters)
        async with http.get(f"{console.kizuna.url}/r/{links[hanako.user_id]}", allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (302, LINK)
    status, _ = await console.kizuna.api("POST", "/api/v1/coupons/redeem", json={"code": codes[hanako.user_id]})
    assert status == 200

    response, page = await browser.get(f"/console/campaigns/{campaign.id}")
    for key, value in {"clicks": "1", "clickers": "1", "click_rate": "50.0%", "redeemed": "1", "orders": "0", "revenue": "¥0"}.items():
        assert re.search(rf'data-result="{key}">{re.escape(value)}<', page), key
    assert "冬の500円OFF" in page and "対照群なしの配信です" in page


async def test_links_untracked_when_switched_off(console):
    [hanako] = await befriend(console, "花子")
    segment_id = await saved_segment(console)
    browser = await marketer(console)
    response, _ = await browser.post("/console/campaigns/new", form(segment_id, quiet_hours="", m0_text=f"会場 {LINK}"))
    assert response.status == 303  # the form without track_links: the box was unticked
    [campaign] = await stored_campaigns(console)
    assert campaign.track_links is False
    await completed(console, campaign.id)
    assert campaign_texts(console, hanako) == [f"会場 {LINK}"]


async def test_a_test_send_reaches_the_staff_account_only(console):
    staff, customer = await befriend(console, "店長", "花子")
    stranger = console.kizuna.emulator.add_user("友だちではない人")  # never followed
    segment_id = await saved_segment(console)
    browser = await marketer(console)
    response, _ = await browser.post("/console/campaigns/new", form(segment_id, action="draft", m0_text="{name}さん、試しです"))
    [campaign] = await stored_campaigns(console)
    url = f"/console/campaigns/{campaign.id}"
    response, page = await browser.get(url)
    assert "テスト配信" in page and 'name="line_user_ids"' in page

    # someone who is not a friend of the account: refused, naming them, what was typed kept, nothing sent
    typed = f"{staff.user_id}\n{stranger.user_id}"
    response, page = await browser.post(f"{url}/test", {"line_user_ids": typed})
    assert response.status == 400
    assert f"{stranger.user_id} はお店のLINEアカウントの友だちではありません" in html.unescape(page)
    assert html.escape(typed) in page or typed in page
    response, page = await browser.post(f"{url}/test", {"line_user_ids": "\n".join(f"U{n:032x}" for n in range(11))})
    assert response.status == 400 and "LINEユーザーIDを1〜10件" in html.unescape(page)
    assert campaign_texts(console, staff) == []

    response, _ = await browser.post(f"{url}/test", {"line_user_ids": f"  {staff.user_id}  \n\n"})
    assert response.status == 303 and response.headers["Location"].endswith("?notice=tested#test")
    await console.kizuna.emulator.wait_for_messages(staff.user_id, 2)  # the follow greeting, then the test
    assert campaign_texts(console, staff) == ["店長さん、試しです"]
    assert campaign_texts(console, customer) == []
    response, page = await browser.get(response.headers["Location"])
    assert "テスト配信を送りました。" in page and "下書き" in page  # the campaign itself is untouched
    [entry] = await console.audit("campaign.test_sent")
    assert entry.actor == "marketer@example.com"


async def test_the_results_give_the_purchase_rate_difference_with_its_interval(console):
    users = await befriend(console, *[f"客{n:02d}" for n in range(80)])
    segment_id = await saved_segment(console)
    browser = await marketer(console)
    response, _ = await browser.post("/console/campaigns/new", form(segment_id, quiet_hours="", holdout="50"))
    assert response.status == 303
    [campaign] = await stored_campaigns(console)
    await completed(console, campaign.id)
    received = [user for user in users if campaign_texts(console, user)]
    control = [user for user in users if not campaign_texts(console, user)]
    assert len(received) >= 30 and len(control) >= 30, (len(received), len(control))  # both big enough for an interval

    # 6 recipients and 2 of the control group order after the send
    buyers = received[:6] + control[:2]
    orders = [{"external_id": f"EC-{n}", "ordered_at": utcnow().isoformat(), "total": 2000, "line_user_id": user.user_id}
              for n, user in enumerate(buyers)]
    status, answer = await console.kizuna.api("POST", "/api/v1/orders", json={"orders": orders})
    assert status == 200, answer

    response, page = await browser.get(f"/console/campaigns/{campaign.id}")
    page = html.unescape(page)
    treated_rate, control_rate = 6 / len(received), 2 / len(control)
    difference = uplift(attribution.Group(len(received), 6, 6, 12000, 0), attribution.Group(len(control), 2, 2, 4000, 0))
    assert re.search(rf'data-uplift-value>{re.escape(f"{(treated_rate - control_rate) * 100:+.1f}")}pt<', page)
    assert f"95%信頼区間 {difference.low * 100:+.1f}pt 〜 {difference.high * 100:+.1f}pt" in page
    assert re.search(r'data-group="control">.*?data-cell="orders">2<', page, re.S)
    assert re.search(r'data-result="orders">6<', page) and re.search(r'data-result="revenue">¥12,000<', page)
    assert f'data-cell="rate">{treated_rate * 100:.1f}%<' in page and f'data-cell="rate">{control_rate * 100:.1f}%<' in page


async def test_a_coupon_leaves_room_for_four_messages_and_says_so(console):
    segment_id = await saved_segment(console)
    coupon_id = await a_coupon(console)
    browser = await marketer(console)
    five = {f"m{n}_{key}": value for n in range(5) for key, value in (("type", "text"), ("text", f"メッセージ{n}"))}
    response, page = await browser.post("/console/campaigns/new", form(segment_id, coupon=str(coupon_id), m_slots="5", **five))
    assert response.status == 400 and "クーポンを付けるとメッセージは4件までです" in html.unescape(page)
    links = " ".join(f"https://shop.example/{n}" for n in range(21))
    response, page = await browser.post("/console/campaigns/new", form(segment_id, track_links="on", m0_text=links))
    assert response.status == 400 and "計測できるリンクの種類が多すぎます" in html.unescape(page)
    assert await stored_campaigns(console) == []
