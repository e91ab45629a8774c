"""The LINE client against the emulator: retries, retry keys, reply fallback."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from kizuna.bot.line import LineClient, LineError, LineUnavailable, RetryPolicy
from kizuna.storage.models import Delivery
from tests.conftest import ACCESS_TOKEN, eventually

TEXT = [{"type": "text", "text": "こんにちは"}]


@pytest.fixture
async def line(emulator):
    client = LineClient(
        access_token=ACCESS_TOKEN, api_base_url=emulator.base_url, data_api_base_url=emulator.base_url,
        timeout=0.5, retry=RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05),
    )
    yield client
    await client.close()


def _friend(emulator, name="テスト"):
    user = emulator.add_user(display_name=name)
    user.followed = True
    return user


async def test_push_retried_after_5xx_with_the_same_key_is_delivered_once(line, emulator):
    user = _friend(emulator)
    key = str(uuid.uuid4())
    emulator.fail_next("push", status=500, count=2)
    await line.push(user.user_id, TEXT, retry_key=key)
    pushes = emulator.requests_to("push")
    assert [request.status for request in pushes] == [500, 500, 200]
    assert {request.headers.get("X-Line-Retry-Key") for request in pushes} == {key}
    assert len(emulator.messages_to(user.user_id)) == 1


async def test_push_whose_answer_was_lost_is_not_sent_twice(line, emulator):
    user = _friend(emulator)
    emulator.fail_next("push", status=500, after_executing=True)  # delivered, but the bot sees 500
    await line.push(user.user_id, TEXT, retry_key=str(uuid.uuid4()))
    assert [request.status for request in emulator.requests_to("push")] == [500, 409]
    assert len(emulator.messages_to(user.user_id)) == 1


async def test_push_timeout_is_retried_with_the_same_key(line, emulator):
    user = _friend(emulator)
    emulator.delay_next("push", 1.0, after_executing=True)  # longer than the client's 0.5 s timeout
    await line.push(user.user_id, TEXT, retry_key=str(uuid.uuid4()))
    assert len(emulator.messages_to(user.user_id)) == 1


async def test_validation_error_is_not_retried_and_names_the_property(line, emulator):
    user = _friend(emulator)
    with pytest.raises(LineError) as raised:
        await line.push(user.user_id, [{"type": "text", "text": "あ" * 5001}], retry_key=str(uuid.uuid4()))
    assert raised.value.status == 400
    assert any(detail.get("property") == "messages[0].text" for detail in raised.value.details)
    assert len(emulator.requests_to("push")) == 1


async def test_rate_limit_is_retried_but_monthly_quota_is_not(line, emulator):
    user = _friend(emulator)
    emulator.fail_next("push", status=429, body={"message": "The API rate limit has been exceeded. Try again later."})
    await line.push(user.user_id, TEXT, retry_key=str(uuid.uuid4()))
    assert len(emulator.messages_to(user.user_id)) == 1

    emulator.quota_limit = 1
    with pytest.raises(LineError) as raised:
        await line.push(user.user_id, TEXT, retry_key=str(uuid.uuid4()))
    assert raised.value.status == 429 and "monthly limit" in raised.value.message
    assert len(emulator.requests_to("push")) == 3  # one 429 retried once, one quota refusal


async def test_lasting_5xx_raises_unavailable(line, emulator):
    user = _friend(emulator)
    emulator.fail_next("push", status=503, count=10)
    with pytest.raises(LineUnavailable):
        await line.push(user.user_id, TEXT, retry_key=str(uuid.uuid4()))
    assert len(emulator.requests_to("push")) == 4
    assert emulator.messages_to(user.user_id) == []


async def test_spent_reply_token_falls_back_to_push(line, emulator):
    user = _friend(emulator)
    result = await emulator.send_text(user.user_id, "hi")  # no bot listening: the token stays unused
    token = result.event["replyToken"]
    emulator.expire_reply_tokens()
    sent = await line.send(user.user_id, TEXT, retry_key=str(uuid.uuid4()), reply_token=token, reply_tried_before=False)
    assert (sent.method, sent.status) == ("push", "sent")
    [message] = emulator.messages_to(user.user_id)
    assert message.via == "push"


async def test_reply_that_timed_out_and_is_then_refused_is_undetermined_not_pushed(line, emulator):
    user = _friend(emulator)
    result = await emulator.send_text(user.user_id, "hi")
    emulator.delay_next("reply", 1.0, after_executing=True)  # delivered, answer too late
    sent = await line.send(user.user_id, TEXT, retry_key=str(uuid.uuid4()), reply_token=result.event["replyToken"], reply_tried_before=False)
    assert sent.status == "undetermined"
    assert emulator.requests_to("push") == []
    assert len(emulator.messages_to(user.user_id)) == 1


async def test_profile_of_blocked_user_is_none(line, emulator):
    user = _friend(emulator, "山田")
    assert (await line.get_profile(user.user_id)).display_name == "山田"
    user.blocked = True
    assert await line.get_profile(user.user_id) is None


async def test_reply_lost_in_the_pipeline_is_recorded_undetermined(kizuna):
    """End to end: LINE delivered the reply but the bot saw a 500; the retry is refused;
    the customer has one message and the delivery says 'undetermined'."""
    user = kizuna.emulator.add_user(display_name="テスト")
    kizuna.emulator.fail_next("reply", status=500, after_executing=True)
    await kizuna.emulator.send_text(user.user_id, "こんにちは")

    async def settled() -> bool:
        async with kizuna.sessions() as session:
            return (await session.execute(sa.select(Delivery.status))).scalar_one_or_none() == "undetermined"

    await eventually(settled, what="delivery undetermined")
    assert len(kizuna.emulator.messages_to(user.user_id)) == 1
    assert kizuna.emulator.requests_to("push") == []


async def test_content_a_customer_sent_and_the_read_mark(line, emulator):
    user = _friend(emulator)
    event = emulator.make_event("image", user.user_id)
    await emulator.send_events([event])  # (no webhook URL: LINE keeps the content all the same)
    data, content_type = await line.get_message_content(event["message"]["id"])
    assert content_type == "image/png" and data.startswith(b"\x89PNG")
    assert await line.get_message_content("999999999") is None  # gone from LINE (or never there)
    await line.mark_as_read(event["message"]["markAsReadToken"])
    assert [chat for chat, _at in emulator.read_marks] == [user.user_id]
    with pytest.raises(LineError) as refused:
        await line.mark_as_read(event["message"]["markAsReadToken"])  # used: LINE refuses it, once
    assert refused.value.status == 400 and len(emulator.requests_to("mark_as_read")) == 2
