"""The Messaging API as the real line-bot-sdk v3 async client sees it."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import pytest
from linebot.v3.messaging import (
    ApiException,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    AsyncApiClient,
    Configuration,
    MarkMessagesAsReadByTokenRequest,
    MulticastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
    TextMessage,
)

from kizuna.emulator import Emulator

from kizuna.emulator.testing import FakeBot, FakeClock

TOKEN = "test-access-token"  # as in conftest.py


def text(t: str) -> TextMessage:
    return TextMessage(text=t)


def body_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


async def test_wrong_or_missing_token_is_401(running, http) -> None:
    config = Configuration(host=running.base_url, access_token="wrong")
    async with AsyncApiClient(config) as client:
        with pytest.raises(ApiException) as info:
            await AsyncMessagingApi(client).get_bot_info()
    assert info.value.status == 401
    assert body_of(info.value) == {
        "message": "Authentication failed. Confirm that the access token in the authorization header is valid."
    }
    assert info.value.headers["x-line-request-id"]
    async with http.get(running.url("/v2/bot/info")) as response:
        assert response.status == 401
        assert response.headers["x-line-request-id"]


async def test_bot_info_and_request_log(line: AsyncMessagingApi, emu: Emulator) -> None:
    response = await line.get_bot_info_with_http_info()
    assert response.status_code == 200
    assert response.data.user_id == emu.bot_user_id
    assert response.data.display_name == emu.bot_display_name
    assert response.data.basic_id.startswith("@")
    entry = emu.requests[-1]
    assert (entry.method, entry.path, entry.status, entry.endpoint) == ("GET", "/v2/bot/info", 200, "bot_info")
    assert entry.request_id == response.headers["x-line-request-id"]


async def test_push_delivers_and_returns_sent_messages(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("山田 花子", followed=True)
    response = await line.push_message_with_http_info(
        PushMessageRequest(to=user.user_id, messages=[text("こんにちは"), text("ようこそ")])
    )
    assert response.status_code == 200
    assert len(response.data.sent_messages) == 2
    assert all(m.id and m.quote_token for m in response.data.sent_messages)
    got = emu.messages_to(user.user_id)
    assert [d.message["text"] for d in got] == ["こんにちは", "ようこそ"]
    assert all(d.via == "push" and d.delivered for d in got)
    assert got[0].request_id == response.headers["x-line-request-id"]
    assert got[0].message_id == response.data.sent_messages[0].id


async def test_push_to_blocked_user_is_accepted_but_not_delivered(
    line: AsyncMessagingApi, emu: Emulator, bot: FakeBot
) -> None:
    user = emu.add_user("佐藤")
    await emu.follow(user.user_id)
    await emu.unfollow(user.user_id)
    assert user.blocked and not user.followed
    await line.push_message(PushMessageRequest(to=user.user_id, messages=[text("セール")]))
    [sent] = emu.messages_to(user.user_id)
    assert sent.delivered is False
    assert emu.quota_used == 1
    with pytest.raises(ApiException) as info:
        await line.get_profile(user.user_id)
    assert info.value.status == 404
    assert body_of(info.value) == {"message": "Not found"}


async def test_profile_fields_may_be_missing(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("高橋", language=None, followed=True)
    profile = await line.get_profile(user.user_id)
    assert profile.display_name == "高橋"
    assert profile.user_id == user.user_id
    assert profile.picture_url is None and profile.language is None
    with pytest.raises(ApiException) as info:
        await line.get_profile("U" + "f" * 32)
    assert info.value.status == 404


async def test_reply_token_is_single_use(line: AsyncMessagingApi, emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("田中")
    await emu.follow(user.user_id)
    result = await emu.send_text(user.user_id, "こんにちは")
    assert result.status == 200
    token = result.event["replyToken"]
    reply = await line.reply_message(ReplyMessageRequest(reply_token=token, messages=[text("はい")]))
    assert len(reply.sent_messages) == 1
    with pytest.raises(ApiException) as info:
        await line.reply_message(ReplyMessageRequest(reply_token=token, messages=[text("もう一度")]))
    assert info.value.status == 400
    assert body_of(info.value) == {"message": "Invalid reply token"}
    assert [(d.via, d.message["text"]) for d in emu.messages_to(user.user_id)] == [("reply", "はい")]


async def test_reply_token_expires(line: AsyncMessagingApi, emu: Emulator, bot: FakeBot, clock: FakeClock) -> None:
    user = emu.add_user("伊藤", followed=True)
    first = await emu.send_text(user.user_id, "一")
    clock.advance(61)
    with pytest.raises(ApiException) as info:
        await line.reply_message(ReplyMessageRequest(reply_token=first.event["replyToken"], messages=[text("x")]))
    assert info.value.status == 400
    # expire_reply_tokens() spends every outstanding token at once.
    second = await emu.send_text(user.user_id, "二")
    emu.expire_reply_tokens()
    with pytest.raises(ApiException):
        await line.reply_message(ReplyMessageRequest(reply_token=second.event["replyToken"], messages=[text("x")]))
    # A shorter ttl is configurable.
    emu.reply_token_ttl = 5
    third = await emu.send_text(user.user_id, "三")
    clock.advance(6)
    with pytest.raises(ApiException):
        await line.reply_message(ReplyMessageRequest(reply_token=third.event["replyToken"], messages=[text("x")]))


async def test_redelivered_token_is_valid_for_20_minutes_if_unused(
    line: AsyncMessagingApi, emu: Emulator, bot: FakeBot, clock: FakeClock
) -> None:
    user = emu.add_user("渡辺", followed=True)
    bot.status = 500
    first = await emu.send_text(user.user_id, "届かない")
    assert first.status == 500
    bot.status = 200
    clock.advance(10 * 60)
    again = await emu.redeliver(first.event)
    assert again.status == 200
    redelivered = bot.payloads[-1]["events"][0]
    assert redelivered["deliveryContext"] == {"isRedelivery": True}
    assert redelivered["webhookEventId"] == first.event["webhookEventId"]
    assert redelivered["replyToken"] == first.event["replyToken"]
    assert first.event["deliveryContext"] == {"isRedelivery": False}  # the original is not changed
    await line.reply_message(ReplyMessageRequest(reply_token=redelivered["replyToken"], messages=[text("ok")]))
    # Spent: a second redelivery's token is refused; so is one older than 20 minutes.
    with pytest.raises(ApiException):
        await line.reply_message(ReplyMessageRequest(reply_token=redelivered["replyToken"], messages=[text("x")]))
    late = await emu.send_text(user.user_id, "遅い")
    clock.advance(21 * 60)
    await emu.redeliver(late.event)
    with pytest.raises(ApiException):
        await line.reply_message(ReplyMessageRequest(reply_token=late.event["replyToken"], messages=[text("x")]))


async def test_retry_key_on_reply_is_refused(running, http, emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("小林", followed=True)
    result = await emu.send_text(user.user_id, "やあ")
    async with http.post(
        running.url("/v2/bot/message/reply"),
        json={"replyToken": result.event["replyToken"], "messages": [{"type": "text", "text": "x"}]},
        headers={"Authorization": f"Bearer {TOKEN}", "X-Line-Retry-Key": str(uuid.uuid4())},
    ) as response:
        assert response.status == 400
    # The refused request did not spend the token.
    async with http.post(
        running.url("/v2/bot/message/reply"),
        json={"replyToken": result.event["replyToken"], "messages": [{"type": "text", "text": "x"}]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 200


async def test_retry_key_must_be_a_uuid(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("加藤", followed=True)
    with pytest.raises(ApiException) as info:
        await line.push_message(PushMessageRequest(to=user.user_id, messages=[text("x")]), x_line_retry_key="not-a-uuid")
    assert info.value.status == 400
    assert emu.messages_to(user.user_id) == []


async def test_retry_key_409_carries_original_request_and_sent_messages(
    line: AsyncMessagingApi, emu: Emulator, clock: FakeClock
) -> None:
    user = emu.add_user("山本", followed=True)
    key = str(uuid.uuid4())
    request = PushMessageRequest(to=user.user_id, messages=[text("一度だけ")])
    first = await line.push_message_with_http_info(request, x_line_retry_key=key)
    original_id = first.headers["x-line-request-id"]
    with pytest.raises(ApiException) as info:
        await line.push_message(request, x_line_retry_key=key)
    exc = info.value
    assert exc.status == 409
    body = body_of(exc)
    assert body["message"] == "The retry key is already accepted"
    assert body["sentMessages"] == [
        {"id": first.data.sent_messages[0].id, "quoteToken": first.data.sent_messages[0].quote_token}
    ]
    assert exc.headers["x-line-accepted-request-id"] == original_id
    assert exc.headers["x-line-request-id"] not in ("", original_id)
    assert len(emu.messages_to(user.user_id)) == 1
    assert emu.quota_used == 1
    # After 24 hours the key is forgotten and the same request is executed again.
    clock.advance(24 * 3600 + 1)
    await line.push_message(request, x_line_retry_key=key)
    assert len(emu.messages_to(user.user_id)) == 2


async def test_multicast_retry_key_and_recipients(line: AsyncMessagingApi, emu: Emulator) -> None:
    users = [emu.add_user(f"客{i}", followed=True) for i in range(3)]
    key = str(uuid.uuid4())
    request = MulticastRequest(to=[u.user_id for u in users], messages=[text("お知らせ")])
    response = await line.multicast_with_http_info(request, x_line_retry_key=key)
    assert response.status_code == 200
    with pytest.raises(ApiException) as info:
        await line.multicast(request, x_line_retry_key=key)
    assert info.value.status == 409
    assert "sentMessages" not in body_of(info.value)
    assert info.value.headers["x-line-accepted-request-id"] == response.headers["x-line-request-id"]
    for u in users:
        [d] = emu.messages_to(u.user_id)
        assert (d.via, d.retry_key, d.message["text"]) == ("multicast", key, "お知らせ")
    assert emu.quota_used == 3


async def test_multicast_refuses_group_ids_and_too_many(running, http) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    message = [{"type": "text", "text": "x"}]
    async with http.post(
        running.url("/v2/bot/message/multicast"),
        json={"to": ["U" + "a" * 32, "C" + "b" * 32], "messages": message}, headers=headers,
    ) as response:
        assert response.status == 400
        body = await response.json()
        assert body["message"] == "The request body has 1 error(s)"
        assert body["details"][0]["property"] == "to[1]"
    too_many = ["U" + f"{i:032x}" for i in range(501)]
    async with http.post(
        running.url("/v2/bot/message/multicast"), json={"to": too_many, "messages": message}, headers=headers
    ) as response:
        assert response.status == 400
        assert (await response.json())["details"][0]["property"] == "to"


async def test_monthly_quota(line: AsyncMessagingApi, emu: Emulator) -> None:
    users = [emu.add_user(f"客{i}", followed=True) for i in range(3)]
    quota = await line.get_message_quota()
    assert quota.to_dict() == {"type": "none"}
    emu.quota_limit = 3
    quota = await line.get_message_quota()
    assert quota.value == 3
    await line.multicast(MulticastRequest(to=[u.user_id for u in users[:2]], messages=[text("a")]))
    await line.push_message(PushMessageRequest(to=users[2].user_id, messages=[text("b")]))
    assert (await line.get_message_quota_consumption()).total_usage == 3
    with pytest.raises(ApiException) as info:
        await line.push_message(PushMessageRequest(to=users[0].user_id, messages=[text("c")]))
    assert info.value.status == 429
    assert body_of(info.value) == {"message": "You have reached your monthly limit."}
    assert len(emu.messages_to(users[0].user_id)) == 1


async def test_replies_are_free(line: AsyncMessagingApi, emu: Emulator, bot: FakeBot) -> None:
    emu.quota_limit = 0
    user = emu.add_user("無料", followed=True)
    result = await emu.send_text(user.user_id, "質問")
    await line.reply_message(ReplyMessageRequest(reply_token=result.event["replyToken"], messages=[text("答え")]))
    assert emu.quota_used == 0


async def test_rate_limit_gives_429(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("速い", followed=True)
    emu.set_rate_limit("push", per_second=2)
    statuses = []
    for _ in range(4):
        try:
            await line.push_message(PushMessageRequest(to=user.user_id, messages=[text("x")]))
            statuses.append(200)
        except ApiException as exc:
            statuses.append(exc.status)
            assert body_of(exc) == {"message": "The API rate limit has been exceeded. Try again later."}
    assert statuses == [200, 200, 429, 429]  # the fake clock does not move: no refill
    assert len(emu.messages_to(user.user_id)) == 2


async def test_rate_limit_refills_with_the_clock(line: AsyncMessagingApi, emu: Emulator, clock: FakeClock) -> None:
    emu.set_rate_limit("bot_info", per_second=1)
    await line.get_bot_info()
    with pytest.raises(ApiException):
        await line.get_bot_info()
    clock.advance(1.0)
    await line.get_bot_info()


async def test_default_multicast_limit_is_200_per_second(emu: Emulator) -> None:
    allowed = sum(emu.rate_limiter.allow("multicast") for _ in range(250))
    assert allowed == 200
    assert sum(emu.rate_limiter.allow("broadcast") for _ in range(70)) == 60


async def test_fail_next_does_not_execute(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("失敗", followed=True)
    key = str(uuid.uuid4())
    request = PushMessageRequest(to=user.user_id, messages=[text("x")])
    emu.fail_next("push", status=503, count=2)
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            await line.push_message(request, x_line_retry_key=key)
        assert info.value.status == 503
    assert emu.messages_to(user.user_id) == []
    await line.push_message(request, x_line_retry_key=key)  # not accepted before: executes now
    assert len(emu.messages_to(user.user_id)) == 1
    assert [r.status for r in emu.requests_to("push")] == [503, 503, 200]
    assert all(r.headers.get("X-Line-Retry-Key") == key for r in emu.requests_to("push"))


async def test_fail_next_after_executing_is_a_lost_response(line: AsyncMessagingApi, emu: Emulator) -> None:
    user = emu.add_user("消失", followed=True)
    key = str(uuid.uuid4())
    request = PushMessageRequest(to=user.user_id, messages=[text("一通")])
    emu.fail_next("push", status=500, after_executing=True, body={"message": "boom"})
    with pytest.raises(ApiException) as info:
        await line.push_message(request, x_line_retry_key=key)
    assert info.value.status == 500
    assert body_of(info.value) == {"message": "boom"}
    assert len(emu.messages_to(user.user_id)) == 1  # it did go out
    with pytest.raises(ApiException) as info:
        await line.push_message(request, x_line_retry_key=key)
    assert info.value.status == 409
    assert len(emu.messages_to(user.user_id)) == 1


async def test_lost_reply_spends_the_token(line: AsyncMessagingApi, emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("返信", followed=True)
    result = await emu.send_text(user.user_id, "?")
    emu.fail_next("reply", status=500, after_executing=True)
    request = ReplyMessageRequest(reply_token=result.event["replyToken"], messages=[text("答え")])
    with pytest.raises(ApiException):
        await line.reply_message(request)
    with pytest.raises(ApiException) as info:
        await line.reply_message(request)
    assert body_of(info.value) == {"message": "Invalid reply token"}
    assert len(emu.messages_to(user.user_id)) == 1


async def test_delay_next_lets_a_client_time_out(running, emu: Emulator) -> None:
    user = emu.add_user("遅延", followed=True)
    emu.delay_next("push", 0.5)
    config = Configuration(host=running.base_url, access_token=TOKEN)
    key = str(uuid.uuid4())
    request = PushMessageRequest(to=user.user_id, messages=[text("x")])
    async with AsyncApiClient(config) as client:
        api = AsyncMessagingApi(client)
        with pytest.raises(asyncio.TimeoutError):
            await api.push_message(request, x_line_retry_key=key, _request_timeout=0.1)
        # The retry with the same key goes through at once; the slow original then finds the
        # key accepted and sends nothing: one message in the end.
        await api.push_message(request, x_line_retry_key=key)
        await emu.wait_for_messages(user.user_id, 1)
        waiter = asyncio.ensure_future(_wait_for_status(emu, "push", 409))
        await asyncio.wait_for(waiter, 5)
    assert len(emu.messages_to(user.user_id)) == 1


async def _wait_for_status(emu: Emulator, endpoint: str, status: int) -> None:
    condition = emu._cond()
    async with condition:
        await condition.wait_for(lambda: any(r.status == status for r in emu.requests_to(endpoint)))


async def test_wait_for_messages_times_out_with_what_arrived(emu: Emulator, line: AsyncMessagingApi) -> None:
    user = emu.add_user("待つ", followed=True)
    await line.push_message(PushMessageRequest(to=user.user_id, messages=[text("一つ目")]))
    with pytest.raises(TimeoutError, match="1 arrived.*一つ目"):
        await emu.wait_for_messages(user.user_id, 2, timeout=0.05)


async def test_wait_for_messages_wakes_on_delivery(emu: Emulator, line: AsyncMessagingApi) -> None:
    user = emu.add_user("起きる", followed=True)
    waiter = asyncio.ensure_future(emu.wait_for_messages(user.user_id, 2, timeout=5))
    await line.push_message(PushMessageRequest(to=user.user_id, messages=[text("a"), text("b")]))
    got = await waiter
    assert [d.message["text"] for d in got] == ["a", "b"]


async def test_loading_animation(line: AsyncMessagingApi, emu: Emulator, running, http) -> None:
    user = emu.add_user("読込", followed=True)
    response = await line.show_loading_animation_with_http_info(
        ShowLoadingAnimationRequest(chat_id=user.user_id, loading_seconds=10)
    )
    assert response.status_code == 202
    assert emu.loading_animations[-1][:2] == (user.user_id, 10)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for bad in ({"chatId": user.user_id, "loadingSeconds": 7}, {"chatId": user.user_id, "loadingSeconds": 65},
                {"chatId": "C" + "0" * 32, "loadingSeconds": 5}):
        async with http.post(running.url("/v2/bot/chat/loading/start"), json=bad, headers=headers) as r:
            assert r.status == 400, bad


async def test_mark_as_read(line: AsyncMessagingApi, emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("既読", followed=True)
    result = await emu.send_text(user.user_id, "読んでね")
    token = result.event["message"]["markAsReadToken"]
    await line.mark_messages_as_read_by_token(MarkMessagesAsReadByTokenRequest(mark_as_read_token=token))
    assert emu.read_marks[-1][0] == user.user_id
    with pytest.raises(ApiException) as info:
        await line.mark_messages_as_read_by_token(MarkMessagesAsReadByTokenRequest(mark_as_read_token="nope"))
    assert info.value.status == 400


async def test_message_content_of_user_image(blob: AsyncMessagingApiBlob, emu: Emulator, bot: FakeBot) -> None:
    user = emu.add_user("写真", followed=True)
    result = await emu.send_image(user.user_id)
    data = await blob.get_message_content(result.event["message"]["id"])
    assert bytes(data).startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ApiException) as info:
        await blob.get_message_content("123")
    assert info.value.status == 404


async def test_broadcast_and_narrowcast_reach_followers(line: AsyncMessagingApi, emu: Emulator) -> None:
    from linebot.v3.messaging import BroadcastRequest, NarrowcastRequest

    friends = [emu.add_user(f"友{i}", followed=True) for i in range(2)]
    stranger = emu.add_user("他人")
    key = str(uuid.uuid4())
    await line.broadcast(BroadcastRequest(messages=[text("全員へ")]), x_line_retry_key=key)
    with pytest.raises(ApiException) as info:
        await line.broadcast(BroadcastRequest(messages=[text("全員へ")]), x_line_retry_key=key)
    assert info.value.status == 409
    emu.narrowcast_wait_seconds = 0.5  # long enough to read "waiting" first, even on a busy machine
    response = await line.narrowcast_with_http_info(NarrowcastRequest(messages=[text("一部へ")]))
    assert response.status_code == 202
    request_id = response.headers["x-line-request-id"]
    # Narrowcast is asynchronous, as at LINE: accepted first, sent a moment later.
    assert (await line.get_narrowcast_progress(request_id)).phase == "waiting"
    for u in friends:
        await emu.wait_for_messages(u.user_id, 2)
    progress = await line.get_narrowcast_progress(request_id)
    assert progress.phase == "succeeded" and progress.success_count == 2
    for u in friends:
        assert [d.via for d in emu.messages_to(u.user_id)] == ["broadcast", "narrowcast"]
    assert emu.messages_to(stranger.user_id) == []
    assert emu.quota_used == 4


async def test_followers_ids(line: AsyncMessagingApi, emu: Emulator) -> None:
    friends = [emu.add_user(f"友{i}", followed=True).user_id for i in range(3)]
    emu.add_user("他人")
    page = await line.get_followers(limit=2)
    assert page.user_ids == friends[:2] and page.next
    rest = await line.get_followers(start=page.next, limit=2)
    assert rest.user_ids == friends[2:] and rest.next is None


async def test_body_limits_and_malformed_json(running, http, emu: Emulator) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with http.post(running.url("/v2/bot/message/push"), data=b"{not json", headers=headers) as r:
        assert r.status == 400
        assert r.headers["x-line-request-id"]
        assert "message" in await r.json()
    big = json.dumps({"to": "U" + "0" * 32, "messages": [{"type": "text", "text": "x" * (2 * 1024 * 1024)}]})
    async with http.post(running.url("/v2/bot/message/push"), data=io.BytesIO(big.encode()), headers=headers) as r:
        assert r.status == 413
    async with http.get(running.url("/v2/bot/no/such/thing"), headers=headers) as r:
        assert r.status == 404
        assert await r.json() == {"message": "Not found"}


async def test_works_mounted_as_a_sub_app(http) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    emu = Emulator(channel_secret="s", access_token=TOKEN)
    main = web.Application()
    main.add_subapp("/emulator", emu.create_app())
    server = TestServer(main, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("/emulator"))
        user = emu.add_user("マウント", followed=True)
        async with AsyncApiClient(Configuration(host=base, access_token=TOKEN)) as client:
            await AsyncMessagingApi(client).push_message(PushMessageRequest(to=user.user_id, messages=[text("x")]))
        assert emu.requests[-1].path == "/v2/bot/message/push"
        async with http.get(base + "/") as r:
            assert r.status == 200
            assert "static/app.js" in await r.text()
        async with http.get(base + "/static/app.js") as r:
            assert r.status == 200
        async with http.get(base + "/api/users") as r:
            assert (await r.json())["users"][0]["display_name"] == "マウント"
    finally:
        await server.close()


async def test_delivered_flag(line: AsyncMessagingApi, emu: Emulator, bot: FakeBot) -> None:
    stranger = emu.add_user("未追加")  # never followed: a reply reaches them, a push does not
    result = await emu.send_text(stranger.user_id, "はじめまして")
    await line.reply_message(ReplyMessageRequest(reply_token=result.event["replyToken"], messages=[text("どうも")]))
    await line.push_message(PushMessageRequest(to=stranger.user_id, messages=[text("お知らせ")]))
    await line.push_message(PushMessageRequest(to="U" + "e" * 32, messages=[text("誰?")]))
    assert [(d.via, d.delivered) for d in emu.messages_to(stranger.user_id)] == [("reply", True), ("push", False)]
    assert [d.delivered for d in emu.messages_to("U" + "e" * 32)] == [False]
