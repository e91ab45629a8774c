"""The webhook and the processor end to end: signed webhooks from the emulator in,
replies captured at the emulator, rows read back through the REST API."""

from __future__ import annotations

import asyncio
import json
import logging

import sqlalchemy as sa

from kizuna.bot.webhook import signature_for
from kizuna.storage.models import InboundEvent, Interaction
from tests.conftest import CHANNEL_SECRET, eventually


async def _count(kizuna, model, *where) -> int:
    async with kizuna.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(model).where(*where))).scalar_one()


async def test_follow_creates_customer_with_profile_and_greets(kizuna):
    user = kizuna.emulator.add_user(display_name="山田 花子", language="ja")
    result = await kizuna.emulator.follow(user.user_id)
    assert result.status == 200

    [greeting] = await kizuna.emulator.wait_for_messages(user.user_id, 1)
    assert greeting.via == "reply"
    assert greeting.message["text"].startswith("友だち追加ありがとうございます")

    customer_id = await kizuna.customer_id(user.user_id)
    status, customer = await kizuna.api("GET", f"/api/v1/customers/{customer_id}")
    assert status == 200
    assert customer["display_name"] == "山田 花子"
    assert customer["language"] == "ja"
    assert customer["followed"] is True and customer["blocked"] is False
    assert customer["followed_at"] is not None

    timeline = await kizuna.timeline(user.user_id)
    assert [(row["direction"], row["kind"]) for row in timeline] == [("in", "follow"), ("out", "message.text")]
    assert timeline[1]["text"] == greeting.message["text"]
    assert timeline[1]["sender_type"] == "bot"


async def test_text_message_gets_a_receipt_that_does_not_echo(kizuna):
    user = kizuna.emulator.add_user(display_name="Taro")
    await kizuna.emulator.send_text(user.user_id, "注文した商品はいつ届きますか")
    [reply] = await kizuna.emulator.wait_for_messages(user.user_id, 1)
    assert reply.message["text"] == "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
    assert "注文" not in reply.message["text"]
    timeline = await kizuna.timeline(user.user_id)
    assert timeline[0]["kind"] == "message.text" and timeline[0]["text"] == "注文した商品はいつ届きますか"
    assert timeline[1]["direction"] == "out"


async def test_english_profile_gets_english_texts(kizuna):
    user = kizuna.emulator.add_user(display_name="Alex", language="en")
    await kizuna.emulator.follow(user.user_id)
    [greeting] = await kizuna.emulator.wait_for_messages(user.user_id, 1)
    assert greeting.message["text"].startswith("Thank you for adding us")


async def test_bad_signature_is_refused_and_nothing_is_stored(kizuna, caplog):
    user = kizuna.emulator.add_user(display_name="テスト")
    body = json.dumps({"destination": "U" + "0" * 32, "events": [kizuna.emulator.make_event("message", user.user_id, text="秘密のメッセージ")]}).encode()
    with caplog.at_level(logging.WARNING, logger="kizuna.webhook"):
        bad = await kizuna.emulator.post_webhook(body, signature="AAAA" + signature_for(CHANNEL_SECRET, body)[4:])
        missing = await kizuna.emulator.post_webhook(body, signature=None)
        wrong_secret = await kizuna.emulator.post_webhook(body, signature=signature_for("another-secret", body))
    assert (bad.status, missing.status, wrong_secret.status) == (401, 400, 401)
    assert await _count(kizuna, InboundEvent) == 0
    assert "rejected" in caplog.text
    assert "秘密" not in caplog.text  # the unauthenticated body is never logged


async def test_malformed_json_and_bad_shapes_are_refused(kizuna):
    # Not a LINE webhook at all. (Events that are not objects are parked: tests/bot/test_webhook_hostile.py.)
    for body in (b"{not json", b"[]", b'{"events": {}}', b'{"destination": "U0"}', "\ufffe".encode("utf-16"), b"\xff{}"):
        result = await kizuna.emulator.post_webhook(body, signature=signature_for(CHANNEL_SECRET, body))
        assert result.status == 400, body
    assert await _count(kizuna, InboundEvent) == 0


async def test_oversized_body_is_refused(kizuna):
    body = json.dumps({"events": [], "padding": "x" * (kizuna.settings.max_body_bytes + 1)}).encode()
    result = await kizuna.emulator.post_webhook(body, signature=signature_for(CHANNEL_SECRET, body))
    assert result.status == 413
    assert await _count(kizuna, InboundEvent) == 0


async def test_empty_events_is_a_connectivity_check(kizuna):
    body = b'{"destination": "U00000000000000000000000000000000", "events": []}'
    result = await kizuna.emulator.post_webhook(body, signature=signature_for(CHANNEL_SECRET, body))
    assert result.status == 200


async def test_redelivery_is_processed_once(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    first = await kizuna.emulator.send_text(user.user_id, "こんにちは")
    await kizuna.emulator.wait_for_messages(user.user_id, 1)
    again = await kizuna.emulator.redeliver(first.event)
    assert again.status == 200
    await eventually(lambda: _no_pending(kizuna), what="no pending events")
    assert len(kizuna.emulator.messages_to(user.user_id)) == 1
    assert await _count(kizuna, Interaction, Interaction.direction == "in") == 1


async def test_concurrent_duplicates_are_processed_once(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    event = kizuna.emulator.make_event("message", user.user_id, text="同時に届く")
    results = await asyncio.gather(*(kizuna.emulator.send_events([event]) for _ in range(20)))
    assert {result.status for result in results} == {200}
    await kizuna.emulator.wait_for_messages(user.user_id, 1)
    await eventually(lambda: _no_pending(kizuna), what="no pending events")
    assert await _count(kizuna, InboundEvent) == 1
    assert await _count(kizuna, Interaction, Interaction.direction == "in") == 1
    assert len(kizuna.emulator.messages_to(user.user_id)) == 1


async def test_events_of_one_user_are_processed_in_timestamp_order(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    base = 1_790_000_000_000
    events = [kizuna.emulator.make_event("message", user.user_id, text=f"m{i:02d}", timestamp=base + i) for i in range(12)]
    # One delivery with the events out of order: LINE's timestamp decides.
    await kizuna.emulator.send_events(events[6:] + events[:6])
    # Then more, one request each, as fast as the webhook answers.
    for i in range(12, 20):
        await kizuna.emulator.send_text(user.user_id, f"m{i:02d}")
    await kizuna.emulator.wait_for_messages(user.user_id, 20)
    inbound = [row["text"] for row in await kizuna.timeline(user.user_id) if row["direction"] == "in"]
    assert inbound == [f"m{i:02d}" for i in range(20)]


async def test_every_event_kind_is_recorded(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    kinds = [
        ("message", {"text": "hi"}), ("message", {"message_type": "image"}), ("message", {"message_type": "video"}),
        ("message", {"message_type": "audio"}), ("message", {"message_type": "file"}),
        ("message", {"message_type": "location"}), ("message", {"message_type": "sticker"}),
        ("follow", {}), ("follow", {"is_unblocked": True}), ("unfollow", {}), ("postback", {"data": "a=1"}),
        ("postback", {"data": "a=2", "params": {"date": "2026-12-01"}}), ("join", {}), ("leave", {}),
        ("memberJoined", {}), ("memberLeft", {}), ("accountLink", {}), ("membership", {}), ("unsend", {}),
        ("videoPlayComplete", {}), ("beacon", {}), ("somethingNewFromLine", {}),
    ]
    events = [kizuna.emulator.make_event(kind, user.user_id, timestamp=1_790_000_000_000 + i, **fields) for i, (kind, fields) in enumerate(kinds)]
    result = await kizuna.emulator.send_events(events)
    assert result.status == 200
    await eventually(lambda: _no_pending(kizuna), what="all events processed")
    async with kizuna.sessions() as session:
        rows = (await session.execute(sa.select(InboundEvent.event_type, InboundEvent.status))).all()
    assert sorted(event_type for event_type, _ in rows) == sorted(kind for kind, _ in kinds)
    assert {status for _, status in rows} == {"done"}
    recorded = {(row["kind"]) for row in await kizuna.timeline(user.user_id) if row["direction"] == "in"}
    for expected in ("message.text", "message.image", "message.video", "message.audio", "message.file",
                     "message.location", "message.sticker", "follow", "unfollow", "postback", "unsend",
                     "videoPlayComplete", "beacon", "accountLink", "membership", "somethingNewFromLine"):
        assert expected in recorded, expected
    postbacks = [row for row in await kizuna.timeline(user.user_id) if row["kind"] == "postback"]
    assert postbacks[1]["payload"]["postback"]["params"] == {"date": "2026-12-01"}


async def test_unfollow_blocks_and_refollow_welcomes_back(kizuna):
    user = kizuna.emulator.add_user(display_name="花子")
    await kizuna.emulator.follow(user.user_id)
    await kizuna.emulator.wait_for_messages(user.user_id, 1)
    await kizuna.emulator.unfollow(user.user_id)
    customer_id = await kizuna.customer_id(user.user_id)

    async def blocked() -> bool:
        return (await kizuna.api("GET", f"/api/v1/customers/{customer_id}"))[1]["blocked"] is True

    await eventually(blocked, what="customer blocked")
    _, customer = await kizuna.api("GET", f"/api/v1/customers/{customer_id}")
    assert customer["followed"] is False and customer["unfollowed_at"] is not None

    await kizuna.emulator.follow(user.user_id, is_unblocked=True)
    messages = await kizuna.emulator.wait_for_messages(user.user_id, 2)
    assert messages[1].message["text"].startswith("再び友だち追加していただき、ありがとうございます！")
    _, customer = await kizuna.api("GET", f"/api/v1/customers/{customer_id}")
    assert customer["followed"] is True and customer["blocked"] is False


async def test_standby_events_are_recorded_but_not_answered(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    event = kizuna.emulator.make_event("message", user.user_id, text="standby")
    event["mode"] = "standby"
    event.pop("replyToken", None)
    await kizuna.emulator.send_events([event])
    await eventually(lambda: _no_pending(kizuna), what="event processed")
    assert [row["kind"] for row in await kizuna.timeline(user.user_id)] == ["message.text"]
    assert kizuna.emulator.messages_to(user.user_id) == []


async def _no_pending(kizuna) -> bool:
    return await _count(kizuna, InboundEvent, InboundEvent.status == "pending") == 0 and await _count(kizuna, InboundEvent) > 0
