"""The step-sequence API: create (and what it refuses), read with figures, pause/resume, roles; and
POST /api/v1/events starting sequences after their delay unless a later event cancels them."""

from __future__ import annotations

from datetime import timedelta

from kizuna.campaigns import sequences
from kizuna.storage import tokens
from kizuna.storage.db import transaction
from kizuna.storage.types import utcnow
from tests.campaigns.test_sequences import arrived, count_of, create_sequence, follower, move_clock, sequence

CART = dict(
    name="カゴ落ち", trigger="api_event", trigger_value="cart_abandoned", cancel_on=["order", "cart_recovered"],
    steps=[{"delay_hours": 1, "messages": [{"type": "text", "text": "{name}さん、カートに商品が残っています"}]}],
)


async def post_event(kizuna, user_id: str, type_: str, event_id: str | None = None, **kwargs) -> tuple[int, dict]:
    body = {"customer": {"line_user_id": user_id}, "type": type_, "data": {"cart_id": "C-1"}}
    if event_id is not None:
        body["event_id"] = event_id
    return await kizuna.api("POST", "/api/v1/events", json=body, **kwargs)


async def test_create_read_pause_and_resume(kizuna):
    created = await create_sequence(kizuna, **CART, send_window={"start": "09:00", "end": "21:00"})
    assert created["status"] == "active" and created["trigger"] == "api_event" and created["trigger_value"] == "cart_abandoned"
    assert set(created["exit_on"]) >= {"ordered_again", "blocked", "opted_out"}
    assert created["send_window"] == {"start": "09:00", "end": "21:00", "timezone": "Asia/Tokyo"}
    assert created["steps"][0]["delay_minutes"] == 60 and created["enrolled"] == 0
    status, paused = await kizuna.api("POST", f"/api/v1/sequences/{created['id']}/pause")
    assert status == 200 and paused["status"] == "paused"
    status, resumed = await kizuna.api("POST", f"/api/v1/sequences/{created['id']}/resume")
    assert status == 200 and resumed["status"] == "active"
    status, listed = await kizuna.api("GET", "/api/v1/sequences")
    assert status == 200 and [item["id"] for item in listed["items"]] == [created["id"]]
    status, missing = await kizuna.api("GET", "/api/v1/sequences/999")
    assert status == 404


async def test_an_edit_replaces_the_steps_and_a_bad_one_changes_nothing(kizuna):
    created = await create_sequence(kizuna, **CART)
    two_steps = {**CART, "name": "カゴ落ち（2通）", "steps": [*CART["steps"], {"delay_hours": 24, "messages": [
        {"type": "text", "text": "まだ間に合います"}]}]}
    status, edited = await kizuna.api("PUT", f"/api/v1/sequences/{created['id']}", json=two_steps)
    assert status == 200 and edited["name"] == "カゴ落ち（2通）" and [s["delay_minutes"] for s in edited["steps"]] == [60, 1440]
    status, answer = await kizuna.api("PUT", f"/api/v1/sequences/{created['id']}", json={**CART, "steps": []})
    assert status == 400 and answer["error"]["field"].startswith("steps")
    status, _ = await kizuna.api("PUT", "/api/v1/sequences/999", json=CART)
    assert status == 404
    _, now = await kizuna.api("GET", f"/api/v1/sequences/{created['id']}")
    assert now["name"] == "カゴ落ち（2通）" and len(now["steps"]) == 2


async def test_create_refuses_what_cannot_be_sent(kizuna):
    text = {"type": "text", "text": "こんにちは"}
    cases = [
        ({"name": "x", "trigger": "tag_added", "steps": [{"messages": [text]}]}, "trigger_value"),
        ({"name": "x", "trigger": "registered", "steps": []}, "steps"),
        ({"name": "x", "trigger": "registered", "steps": [{"messages": [text] * 6}]}, "steps[0].messages"),
        ({"name": "x", "trigger": "registered", "steps": [{"messages": [{"type": "text", "text": ""}]}]}, "steps[0].messages"),
        ({"name": "x", "trigger": "registered", "send_window": {"start": "25:00", "end": "21:00"}, "steps": [{"messages": [text]}]},
         "send_window.start"),
        ({"name": "x", "trigger": "registered", "steps": [{"messages": [text], "coupon_id": 12345}]}, "steps[0].coupon_id"),
    ]
    for body, field in cases:
        status, answer = await kizuna.api("POST", "/api/v1/sequences", json=body)
        assert status == 400 and answer["error"]["field"].startswith(field.split(".")[0]), (body, answer)
    status, _ = await kizuna.api("GET", "/api/v1/sequences")
    async with transaction(kizuna.sessions) as session:
        _token, support = await tokens.create(session, name="support", role="support")
    status, answer = await kizuna.api("POST", "/api/v1/sequences", token=support, json={**CART})
    assert status == 403


async def test_an_event_starts_a_sequence_after_its_delay(kizuna):
    created = await create_sequence(kizuna, **CART)
    user_id, customer_id = await follower(kizuna, "高橋 由美")
    status, answer = await post_event(kizuna, user_id, "cart_abandoned", event_id="ev-1")
    assert status == 201 and answer["enrolled"] == 1 and answer["customer_id"] == customer_id
    status, again = await post_event(kizuna, user_id, "cart_abandoned", event_id="ev-1")
    assert status == 200 and again["created"] is False and again["id"] == answer["id"]
    assert (await sequence(kizuna, created["id"]))["enrolled"] == 1

    move_clock(kizuna, timedelta(minutes=59))
    assert await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(minutes=59)) == []
    move_clock(kizuna, timedelta(hours=1, minutes=1))
    await arrived(kizuna.emulator, user_id, "高橋 由美さん、カートに商品が残っています")
    assert count_of(kizuna.emulator, user_id, "カートに商品が残っています") == 1


async def test_a_later_event_or_an_order_cancels_it(kizuna):
    created = await create_sequence(kizuna, **CART)
    cancelled, _ = await follower(kizuna, "キャンセル")
    ordered, _ = await follower(kizuna, "注文した人")
    for user_id in (cancelled, ordered):
        status, answer = await post_event(kizuna, user_id, "cart_abandoned")
        assert status == 201 and answer["enrolled"] == 1
    status, answer = await post_event(kizuna, cancelled, "cart_recovered")
    assert status == 201 and answer["cancelled"] == 1
    status, _ = await kizuna.api("POST", "/api/v1/orders", json={
        "external_id": "EC-9", "line_user_id": ordered, "ordered_at": utcnow().isoformat(), "total": 5000})
    assert status == 200
    assert await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(hours=2)) == []
    figures = await sequence(kizuna, created["id"])
    assert figures["exited"] == {"cancelled_by_event": 1, "ordered_again": 1} and figures["active"] == 0


async def test_a_paused_sequence_holds_its_due_steps_until_resumed(kizuna):
    created = await create_sequence(kizuna, **CART)
    user_id, _ = await follower(kizuna)
    await post_event(kizuna, user_id, "cart_abandoned")
    await kizuna.api("POST", f"/api/v1/sequences/{created['id']}/pause")
    later = utcnow() + timedelta(hours=2)
    assert await sequences.send_due(kizuna.sessions, now=later) == []
    await kizuna.api("POST", f"/api/v1/sequences/{created['id']}/resume")
    assert len(await sequences.send_due(kizuna.sessions, now=later)) == 1
    await arrived(kizuna.emulator, user_id, "カートに商品が残っています")


async def test_an_event_for_a_customer_known_by_email_only_enrols_nobody(kizuna):
    await create_sequence(kizuna, **CART)
    status, answer = await kizuna.api("POST", "/api/v1/events", json={
        "customer": {"email": "Someone@Example.com"}, "type": "cart_abandoned"})
    assert status == 201 and answer["enrolled"] == 0  # not on LINE: nobody to send to
    status, answer = await kizuna.api("POST", "/api/v1/events", json={"customer": {}, "type": "cart_abandoned"})
    assert status == 400 and answer["error"]["field"].startswith("customer")
