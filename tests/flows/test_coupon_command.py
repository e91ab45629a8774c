"""The "クーポン" command over the emulator: the customer's valid coupons as a Flex
carousel (QR image URL, discount, expiry, code), or a friendly text when there are none."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from kizuna.flows.coupons import coupon_flex, until_text
from kizuna.storage.db import transaction
from kizuna.storage.models import Coupon, CouponGrant, Customer

JST = timezone(timedelta(hours=9))


async def create_coupon(kizuna, **fields) -> dict:
    values = {"title": "初回500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 30, **fields}
    status, body = await kizuna.api("POST", "/api/v1/coupons", json=values)
    assert status == 201, body
    return body


async def give(kizuna, coupon_id: int, customer_id: int) -> dict:
    status, body = await kizuna.api("POST", f"/api/v1/coupons/{coupon_id}/grants", json={"customer_id": customer_id})
    assert status == 201, body
    return body


async def friend(kizuna, name: str = "山田 花子", language: str = "ja"):
    """A LINE user who followed the account (greeted), and their customer id."""
    user = kizuna.emulator.add_user(display_name=name, language=language)
    await kizuna.emulator.follow(user.user_id)
    await kizuna.emulator.wait_for_messages(user.user_id, 1)
    return user, await kizuna.customer_id(user.user_id)


def texts_in(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") == "text" and "text" in node else []
        return found + [t for value in node.values() for t in texts_in(value)]
    if isinstance(node, list):
        return [t for item in node for t in texts_in(item)]
    return []


async def test_coupons_are_shown_as_a_carousel_with_qr_code_and_code(kizuna):
    user, customer_id = await friend(kizuna)
    older = await give(kizuna, (await create_coupon(kizuna))["id"], customer_id)
    newer = await give(kizuna, (await create_coupon(kizuna, title="10%OFF", discount_type="percent", discount_value=10,
                                                      description="全商品にお使いいただけます"))["id"], customer_id)
    used = await give(kizuna, (await create_coupon(kizuna, title="使用済み"))["id"], customer_id)
    assert (await kizuna.api("POST", "/api/v1/coupons/redeem", json={"code": used["code"]}))[0] == 200

    await kizuna.emulator.send_text(user.user_id, "クーポン")
    reply = (await kizuna.emulator.wait_for_messages(user.user_id, 2))[1]
    assert reply.via == "reply"
    message = reply.message
    assert message["type"] == "flex" and message["contents"]["type"] == "carousel"
    assert 0 < len(message["altText"]) <= 400 and "10%OFF" in message["altText"]
    bubbles = message["contents"]["contents"]
    assert len(bubbles) == 2  # the used one is not shown
    for bubble, grant in zip(bubbles, (newer, older)):  # newest first
        hero = bubble["hero"]
        assert hero["url"] == f"{kizuna.settings.base_url}/coupons/{grant['code']}/qr.png"
        assert hero["aspectMode"] == "fit"
        assert grant["code"] in texts_in(bubble)
    first, second = texts_in(bubbles[0]), texts_in(bubbles[1])
    assert "10%OFF" in first and "全商品にお使いいただけます" in first
    assert "500円OFF" in second
    expiry = datetime.fromisoformat(older["expires_at"].replace("Z", "+00:00"))
    last_day = (expiry - timedelta(seconds=1)).astimezone(JST)
    assert f"{last_day.year}年{last_day.month}月{last_day.day}日まで有効" in second
    # The QR the bubble points at is served (the path, on this test server's address).
    status, _ = await _get(kizuna, f"/coupons/{older['code']}/qr.png")
    assert status == 200


async def test_rich_menu_postback_shows_the_same(kizuna):
    user, customer_id = await friend(kizuna)
    grant = await give(kizuna, (await create_coupon(kizuna))["id"], customer_id)
    await kizuna.emulator.send_postback(user.user_id, "action=coupons", display_text="クーポン")
    reply = (await kizuna.emulator.wait_for_messages(user.user_id, 2))[1].message
    assert reply["type"] == "flex" and grant["code"] in texts_in(reply)


async def test_no_coupons_suggests_registration(kizuna):
    user = kizuna.emulator.add_user(display_name="佐藤")
    await kizuna.emulator.send_text(user.user_id, "クーポン")
    [reply] = await kizuna.emulator.wait_for_messages(user.user_id, 1)
    assert reply.message["type"] == "text" and "クーポンはありません" in reply.message["text"]
    [item] = reply.message["quickReply"]["items"]
    assert item["action"]["type"] == "postback" and item["action"]["data"] == "action=register"
    assert item["action"]["label"] == "会員登録する"

    # With a coupon for new members, the suggestion names it.
    await create_coupon(kizuna, title="会員登録で300円OFF", discount_value=300, trigger="registration")
    await kizuna.emulator.send_text(user.user_id, "coupons")
    reply = (await kizuna.emulator.wait_for_messages(user.user_id, 2))[1]
    assert "「会員登録で300円OFF」" in reply.message["text"] and reply.message["quickReply"]


async def test_registered_customer_without_coupons_gets_no_registration_prompt(kizuna):
    user, customer_id = await friend(kizuna)
    async with transaction(kizuna.sessions) as session:
        await session.execute(sa.update(Customer).where(Customer.id == customer_id).values(registered=True))
    await kizuna.emulator.send_text(user.user_id, "クーポン")
    reply = (await kizuna.emulator.wait_for_messages(user.user_id, 2))[1].message
    assert reply["type"] == "text" and "quickReply" not in reply


async def test_english_profile_gets_english_coupons(kizuna):
    user, customer_id = await friend(kizuna, "Alex", language="en")
    await give(kizuna, (await create_coupon(kizuna, discount_value=1500))["id"], customer_id)
    await kizuna.emulator.send_text(user.user_id, "Coupon")
    message = (await kizuna.emulator.wait_for_messages(user.user_id, 2))[1].message
    words = texts_in(message)
    assert "¥1,500 off" in words and any(w.startswith("Valid until ") for w in words)
    assert message["altText"].startswith("Coupons: ")


def test_expiry_is_shown_in_japan_time_with_the_time_only_when_it_is_not_the_end_of_a_day():
    tokyo = timezone(timedelta(hours=9))
    assert until_text(datetime(2027, 1, 1, 0, 0, tzinfo=tokyo), tokyo, "ja") == "2026年12月31日"
    assert until_text(datetime(2026, 12, 31, 14, 59, 59, tzinfo=timezone.utc), tokyo, "ja") == "2026年12月31日"
    assert until_text(datetime(2026, 12, 31, 18, 0, tzinfo=tokyo), tokyo, "ja") == "2026年12月31日 18:00"
    assert until_text(datetime(2027, 1, 1, 0, 0, tzinfo=tokyo), tokyo, "en") == "Dec 31, 2026"


def test_single_coupon_flex_with_the_coupon_image():
    coupon = Coupon(id=1, title="x" * 40, discount_type="percent", discount_value=15, valid_days=7,
                    image_url="https://cdn.example.com/coupon.png", description="説明" * 200)
    grant = CouponGrant(id=1, coupon_id=1, customer_id=1, code="KZN-7F3K-Q9MD-2XH0", per_customer_key="once",
                        expires_at=datetime(2026, 12, 31, 15, 0, tzinfo=timezone.utc))
    message = coupon_flex(grant, coupon, public_url="https://shop.example.com/", locale="ja")
    assert len(message["altText"]) <= 400
    assert message["contents"]["hero"]["url"] == "https://shop.example.com/coupons/KZN-7F3K-Q9MD-2XH0/qr.png"
    assert message["contents"]["body"]["contents"][0]["url"] == "https://cdn.example.com/coupon.png"
    assert "15%OFF" in texts_in(message) and "2026年12月31日まで有効" in texts_in(message)


async def _get(kizuna, path: str) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as client, client.get(kizuna.url + path) as response:
        return response.status, await response.read()
