"""Webhooks the emulator sends, checked with line-bot-sdk's own WebhookParser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from linebot.v3.webhooks import (
    FollowEvent,
    ImageMessageContent,
    LocationMessageContent,
    MessageEvent,
    PostbackEvent,
    StickerMessageContent,
    TextMessageContent,
    UnfollowEvent,
)

from kizuna.emulator import Emulator
from kizuna.emulator.testing import FakeBot

SECRET = "test-channel-secret"  # as in conftest.py
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def common_shape(event: dict, user_id: str) -> None:
    assert ULID_RE.match(event["webhookEventId"])
    assert isinstance(event["timestamp"], int) and event["timestamp"] > 1_600_000_000_000
    assert event["mode"] == "active"
    assert event["source"] == {"type": "user", "userId": user_id}
    assert event["deliveryContext"] == {"isRedelivery": False}


async def test_signature_is_hmac_sha256_of_raw_body(emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("署名")
    result = await emu.follow(user.user_id)
    assert result.status == 200 and result.ok
    assert bot.rejected == 0
    raw = bot.raw[0]
    expected = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
    assert emu.sign(raw) == expected
    payload = json.loads(raw)
    assert payload["destination"] == emu.bot_user_id
    # UTF-8 on the wire, not \\u escapes: the signature must cover the bytes as sent.
    user2 = emu.add_user("日本語")
    await emu.follow(user2.user_id)
    await emu.send_text(user2.user_id, "こんにちは😀")
    assert "こんにちは😀".encode() in bot.raw[-1]


async def test_event_shapes_parse_with_the_sdk(emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("山田 花子")
    await emu.follow(user.user_id)
    await emu.send_text(user.user_id, "こんにちは")
    await emu.send_sticker(user.user_id, package_id="446", sticker_id="1988")
    await emu.send_image(user.user_id)
    await emu.send_location(user.user_id, "東京タワー", "東京都港区芝公園4-2-8", 35.6586, 139.7454)
    await emu.send_postback(user.user_id, data="action=register", params={"date": "1990-01-31"})
    await emu.unfollow(user.user_id)
    kinds = [type(e) for e in bot.parsed]
    assert kinds == [FollowEvent, MessageEvent, MessageEvent, MessageEvent, MessageEvent, PostbackEvent, UnfollowEvent]
    follow, text, sticker, image, location, postback, unfollow = bot.parsed
    assert follow.follow.is_unblocked is False and follow.reply_token
    assert isinstance(text.message, TextMessageContent) and text.message.text == "こんにちは"
    assert text.message.quote_token and text.message.mark_as_read_token
    assert isinstance(sticker.message, StickerMessageContent) and sticker.message.sticker_id == "1988"
    assert isinstance(image.message, ImageMessageContent) and image.message.content_provider.type == "line"
    assert isinstance(location.message, LocationMessageContent) and location.message.title == "東京タワー"
    assert postback.postback.data == "action=register" and postback.postback.params == {"date": "1990-01-31"}
    assert unfollow.source.user_id == user.user_id
    for event in bot.events:
        common_shape(event, user.user_id)
    assert "replyToken" not in bot.events[-1]  # unfollow has none
    ids = [e["webhookEventId"] for e in bot.events]
    assert len(set(ids)) == len(ids)
    stamps = [e["timestamp"] for e in bot.events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_refollow_after_block_is_unblocked(emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("再追加")
    await emu.follow(user.user_id)
    await emu.unfollow(user.user_id)
    assert user.blocked
    await emu.follow(user.user_id, is_unblocked=True)
    assert user.followed and not user.blocked
    assert bot.events[-1]["follow"] == {"isUnblocked": True}


@pytest.mark.parametrize(
    ("kind", "fields", "key", "has_token"),
    [
        ("video", {}, "message", True),
        ("audio", {}, "message", True),
        ("file", {"file_name": "a.pdf", "file_size": 10}, "message", True),
        ("join", {"group_id": "C" + "1" * 32}, None, True),
        ("leave", {"group_id": "C" + "1" * 32}, None, False),
        ("memberJoined", {"group_id": "C" + "1" * 32}, "joined", True),
        ("memberLeft", {"group_id": "C" + "1" * 32}, "left", False),
        ("accountLink", {"result": "ok", "nonce": "n"}, "link", True),
        ("accountLink", {"result": "failed", "nonce": "n"}, "link", False),
        ("membership", {"membership_type": "joined", "membership_id": 3}, "membership", True),
        ("unsend", {"message_id": "123"}, "unsend", False),
        ("videoPlayComplete", {"tracking_id": "t1"}, "videoPlayComplete", True),
        ("beacon", {"hwid": "abc", "beacon_type": "enter"}, "beacon", True),
        ("somethingNew", {"payload": {"x": 1}}, "payload", False),
    ],
)
async def test_make_event_kinds(emu: Emulator, bot: FakeBot, kind: str, fields: dict, key: str | None, has_token: bool) -> None:
    user = emu.add_user("種類")
    event = emu.make_event(kind, user.user_id, **fields)
    if key:
        assert key in event
    assert ("replyToken" in event) is has_token
    result = await emu.send_events([event])
    assert result.status == 200
    assert bot.rejected == 0
    assert len(bot.parsed) == 1  # the SDK parses it (unknown types become UnknownEvent)
    if kind == "somethingNew":
        assert type(bot.parsed[0]).__name__ == "UnknownEvent"


async def test_standby_events_have_no_reply_token(emu: Emulator) -> None:
    user = emu.add_user("待機")
    event = emu.make_event("text", user.user_id, text="x", mode="standby")
    assert event["mode"] == "standby" and "replyToken" not in event


async def test_send_events_fills_defaults_and_batches(emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("まとめ")
    events = [
        {"type": "message", "source": {"type": "user", "userId": user.user_id},
         "message": {"type": "text", "id": "1", "text": "一", "quoteToken": "q"}},
        {"type": "unfollow", "source": {"type": "user", "userId": user.user_id}},
    ]
    result = await emu.send_events(events)
    assert result.status == 200 and len(result.events) == 2
    [payload] = bot.payloads
    first, second = payload["events"]
    assert ULID_RE.match(first["webhookEventId"]) and first["replyToken"] and first["timestamp"]
    assert "replyToken" not in second
    assert user.blocked


async def test_empty_events_connectivity_check(emu: Emulator, bot: FakeBot) -> None:
    result = await emu.send_events([])
    assert result.status == 200
    assert bot.payloads == [{"destination": emu.bot_user_id, "events": []}]


async def test_bad_or_missing_signature(emu: Emulator, bot: FakeBot) -> None:
    body = b'{"destination":"U0","events":[]}'
    assert (await emu.post_webhook(body, "bm90IGEgc2lnbmF0dXJl")).status == 400
    assert (await emu.post_webhook(body, None)).status == 400
    assert (await emu.post_webhook(body, emu.sign(body))).status == 200
    assert bot.rejected == 2


async def test_bot_down_or_failing(emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("障害")
    bot.status = 503
    result = await emu.follow(user.user_id)
    assert result.status == 503 and not result.ok
    notes = [i for i in emu.timeline(user.user_id) if i.kind == "error"]
    assert notes and "503" in notes[0].text
    emu.webhook_url = "http://127.0.0.1:9/callback"  # nothing listens on the discard port
    result = await emu.send_text(user.user_id, "届く?")
    assert result.status == 0 and result.error
    # The user's side of the chat keeps the event even though the bot never saw it.
    sides = [(i.side, i.kind) for i in emu.timeline(user.user_id)]
    assert sides[-2:] == [("user", "event"), ("system", "error")]


async def test_no_webhook_url(emu: Emulator) -> None:
    user = emu.add_user("未設定")
    result = await emu.follow(user.user_id)
    assert result.status == 0 and result.error == "no webhook_url set"
    assert user.followed  # LINE's own state changes whether or not the bot hears of it


async def test_webhook_endpoint_api(emu: Emulator, bot: FakeBot, line) -> None:
    from linebot.v3.messaging import TestWebhookEndpointRequest

    info = await line.get_webhook_endpoint()
    assert info.endpoint == emu.webhook_url and info.active
    result = await line.test_webhook_endpoint(TestWebhookEndpointRequest())
    assert result.success and result.status_code == 200
    assert bot.payloads[-1]["events"] == []


async def test_slow_bot_times_out_like_line(emu: Emulator, bot: FakeBot) -> None:
    import asyncio

    never = asyncio.Event()

    async def stuck(event: dict) -> None:
        await never.wait()

    bot.on_event = stuck
    emu.webhook_timeout = 0.2
    user = emu.add_user("遅い")
    result = await emu.follow(user.user_id)
    assert result.status == 0 and "timeout" in (result.error or "")
    assert [i.kind for i in emu.timeline(user.user_id)][-1] == "error"


async def test_redeliver_an_event_never_sent(emu: Emulator, bot: FakeBot, line) -> None:
    from linebot.v3.messaging import ReplyMessageRequest, TextMessage

    user = emu.add_user("手作り", followed=True)
    event = emu.make_event("text", user.user_id, text="再送だけ")
    result = await emu.redeliver(event)
    assert result.status == 200 and bot.events[0]["deliveryContext"]["isRedelivery"] is True
    await line.reply_message(ReplyMessageRequest(reply_token=event["replyToken"], messages=[TextMessage(text="ok")]))
