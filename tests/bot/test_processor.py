"""Failure handling in the processor: bounded retries, parking, later events flow on."""

from __future__ import annotations

import pytest

from kizuna.handlers import Router, build_router
from tests.conftest import TEST_DATABASE_URL, Kizuna, eventually, start_kizuna


def _router_that_fails_on(text: str, calls: list[str]) -> Router:
    failing = Router("failing")

    @failing.on("message.text", when=lambda event, ctx: ctx.payload["message"]["text"] == text)
    async def explode(event, ctx):
        calls.append(text)
        raise RuntimeError("handler bug")

    root = Router("test")
    root.include(failing, build_router())
    return root


async def test_failing_event_is_retried_then_parked_and_later_events_flow(settings, emulator):
    calls: list[str] = []
    server, token = await start_kizuna(settings, emulator, router=_router_that_fails_on("壊れる", calls))
    kizuna = Kizuna(server=server, emulator=emulator, settings=settings, admin_token=token)
    try:
        user = emulator.add_user(display_name="テスト")
        await emulator.send_events([
            emulator.make_event("message", user.user_id, text="壊れる", timestamp=1_790_000_000_001),
            emulator.make_event("message", user.user_id, text="その次", timestamp=1_790_000_000_002),
        ])
        [reply] = await emulator.wait_for_messages(user.user_id, 1)
        assert reply.message["text"] == "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
        assert calls == ["壊れる"] * settings.max_event_attempts

        status, parked = await kizuna.api("GET", "/api/v1/events?status=parked")
        assert status == 200
        [event] = parked["items"]
        assert event["attempts"] == settings.max_event_attempts
        assert "RuntimeError: handler bug" in event["last_error"]
        assert event["payload"]["message"]["text"] == "壊れる"
        # Nothing the failed attempts did is on the timeline: they rolled back.
        assert [row["text"] for row in await kizuna.timeline(user.user_id) if row["direction"] == "in"] == ["その次"]

        # An admin retries it: it fails again (the bug is still there) and is parked again.
        status, retried = await kizuna.api("POST", f"/api/v1/events/{event['id']}/retry")
        assert status == 200 and retried["status"] == "pending"

        async def parked_again() -> bool:
            return (await kizuna.api("GET", "/api/v1/events?status=parked"))[1]["items"] != []

        await eventually(parked_again, what="the retried event parked again")
        assert len(calls) == 2 * settings.max_event_attempts
        status, refused = await kizuna.api("POST", f"/api/v1/events/{event['id'] + 1}/retry")
        assert status == 409
    finally:
        await server.close()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="SQLite has a single writer: embedded mode runs one event transaction at a time")
async def test_one_user_at_a_time_different_users_in_parallel(settings, emulator):
    """A slow conversation never blocks another customer, and one customer's events
    never run concurrently (aiogram's state-vs-isolation regression, for us)."""
    import asyncio

    running: dict[str, int] = {}
    overlaps: list[str] = []
    release_slow = asyncio.Event()
    router = Router("probe")

    @router.on("message.text")
    async def probe(event, ctx):
        user_id = ctx.customer.line_user_id
        running[user_id] = running.get(user_id, 0) + 1
        if running[user_id] > 1:
            overlaps.append(user_id)
        try:
            if ctx.payload["message"]["text"] == "slow":
                await asyncio.wait_for(release_slow.wait(), timeout=10)
            ctx.reply({"type": "text", "text": "ok " + ctx.payload["message"]["text"]})
        finally:
            running[user_id] -= 1

    server, _token = await start_kizuna(settings, emulator, router=router)
    try:
        slow_user = emulator.add_user(display_name="遅い")
        fast_user = emulator.add_user(display_name="速い")
        await emulator.send_text(slow_user.user_id, "slow")
        for i in range(3):
            await emulator.send_text(slow_user.user_id, f"after {i}")
        for i in range(5):
            await emulator.send_text(fast_user.user_id, f"fast {i}")
        # The fast customer is fully answered while the slow one is still waiting.
        await emulator.wait_for_messages(fast_user.user_id, 5)
        assert emulator.messages_to(slow_user.user_id) == []
        release_slow.set()
        replies = await emulator.wait_for_messages(slow_user.user_id, 4)
        assert [reply.message["text"] for reply in replies] == ["ok slow", "ok after 0", "ok after 1", "ok after 2"]
        assert overlaps == []
    finally:
        await server.close()


async def test_a_failing_event_among_other_customers_events_holds_back_or_doubles_none_of_them(settings, emulator):
    """With Redis a worker runs one event of several customers in one transaction: one
    customer's failing event rolls that transaction back, and still every other customer is
    answered exactly once, the failing event is tried its attempts and parked, and that
    customer's next message is answered."""
    calls: list[str] = []
    server, token = await start_kizuna(settings, emulator, router=_router_that_fails_on("壊れる", calls))
    kizuna = Kizuna(server=server, emulator=emulator, settings=settings, admin_token=token)
    try:
        users = [emulator.add_user(display_name=f"客{i}") for i in range(6)]
        failing = users[2]
        texts = {user.user_id: ("壊れる" if user is failing else f"こんにちは {i}") for i, user in enumerate(users)}
        await emulator.send_events([emulator.make_event("message", user.user_id, text=texts[user.user_id]) for user in users])
        await emulator.send_events([emulator.make_event("message", user.user_id, text="その次") for user in users])
        for user in users:
            await emulator.wait_for_messages(user.user_id, 1 if user is failing else 2, timeout=15)
        for user in users:
            assert len(emulator.messages_to(user.user_id)) == (1 if user is failing else 2), user.display_name
            inbound = [row["text"] for row in await kizuna.timeline(user.user_id) if row["direction"] == "in"]
            assert inbound == (["その次"] if user is failing else [texts[user.user_id], "その次"]), user.display_name
        assert calls == ["壊れる"] * settings.max_event_attempts
        status, parked = await kizuna.api("GET", "/api/v1/events?status=parked")
        assert status == 200 and [event["payload"]["message"]["text"] for event in parked["items"]] == ["壊れる"]
    finally:
        await server.close()
