"""Support conversations through the REST API: the same SupportDesk as the console, admins
and support only."""

from __future__ import annotations

from kizuna.storage import staff as staff_store
from kizuna.storage import tokens
from kizuna.storage.audit import CLI
from kizuna.storage.db import transaction
from kizuna.storage.roles import Role
from tests.conftest import eventually
from tests.flows.test_registration import Chat


async def _token(kizuna, role: Role) -> str:
    async with transaction(kizuna.sessions) as session:
        _token, plain = await tokens.create(session, name=f"{role}-system", role=role)
    return plain


async def _support_staff(kizuna, email: str) -> int:
    new = await staff_store.prepare(email=email, display_name="さくら", role="support", password="correct horse battery")
    async with transaction(kizuna.sessions) as session:
        return (await staff_store.create(session, new, actor=CLI)).id


async def test_a_helpdesk_answers_a_waiting_customer_through_the_api(kizuna):
    user = kizuna.emulator.add_user(display_name="API 太郎")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat.say("担当者")
    await kizuna.emulator.send_text(user.user_id, "注文番号12345の件です")

    async def message_recorded() -> bool:  # (the webhook's answer comes before the worker has processed it)
        return any(row.get("text") == "注文番号12345の件です" for row in await kizuna.timeline(user.user_id))
    await eventually(message_recorded, what="the customer's message on their timeline")
    support = await _token(kizuna, Role.SUPPORT)

    status, page = await kizuna.api("GET", "/api/v1/conversations?status=pending", token=support)
    assert status == 200
    [waiting] = page["items"]
    assert (waiting["customer_id"], waiting["status"], waiting["assignee"]) == (await kizuna.customer_id(user.user_id), "pending", None)

    staff_id = await _support_staff(kizuna, "sakura@example.jp")
    status, assigned = await kizuna.api("POST", f"/api/v1/conversations/{waiting['id']}/assign", token=support,
                                        json={"staff_email": "Sakura@Example.jp"})
    assert status == 200 and assigned["status"] == "open" and assigned["assignee"]["id"] == staff_id

    status, sent = await kizuna.api("POST", f"/api/v1/conversations/{waiting['id']}/messages", token=support,
                                    json={"text": "お待たせしました。確認いたします。"})
    assert status == 201 and sent["direction"] == "out" and sent["private"] is False
    pushed = (await kizuna.emulator.wait_for_messages(user.user_id, 2))[-1]
    assert (pushed.via, pushed.message["text"]) == ("push", "お待たせしました。確認いたします。")

    status, note = await kizuna.api("POST", f"/api/v1/conversations/{waiting['id']}/notes", token=support,
                                    json={"text": "倉庫に確認中"})
    assert status == 201 and note["private"] is True

    status, detail = await kizuna.api("GET", f"/api/v1/conversations/{waiting['id']}", token=support)
    shown = [(message["direction"], message["text"]) for message in detail["messages"]]
    assert ("in", "注文番号12345の件です") in shown and ("out", "お待たせしました。確認いたします。") in shown
    assert ("note", "倉庫に確認中") in shown
    assert len(kizuna.emulator.messages_to(user.user_id)) == 2  # the note was not sent

    status, resolved = await kizuna.api("POST", f"/api/v1/conversations/{waiting['id']}/resolve", token=support,
                                        json={"ask_csat": True})
    assert status == 200 and resolved["status"] == "resolved"
    csat = (await kizuna.emulator.wait_for_messages(user.user_id, 3))[-1]
    assert csat.message["text"].startswith("今回の対応はいかがでしたか")
    status, again = await kizuna.api("POST", f"/api/v1/conversations/{waiting['id']}/resolve", token=support, json={})
    assert status == 409 and again["error"]["code"] == "resolved"


async def test_marketers_never_read_support_conversations(kizuna):
    marketer = await _token(kizuna, Role.MARKETER)
    for method, path in (("GET", "/api/v1/conversations"), ("GET", "/api/v1/conversations/1"),
                         ("POST", "/api/v1/conversations/1/messages"), ("POST", "/api/v1/conversations/1/resolve")):
        status, body = await kizuna.api(method, path, token=marketer, json={"text": "x"})
        assert status == 403 and body["error"]["code"] == "forbidden", path


async def test_bad_requests_change_nothing(kizuna):
    user = kizuna.emulator.add_user(display_name="API 次郎")
    await Chat(kizuna.emulator, user.user_id).say("担当者")
    [conversation] = (await kizuna.api("GET", "/api/v1/conversations"))[1]["items"]
    path = f"/api/v1/conversations/{conversation['id']}"
    assert (await kizuna.api("POST", path + "/assign", json={"staff_email": "nobody@example.jp"}))[0] == 404
    assert (await kizuna.api("POST", path + "/assign", json={"staff_email": "not an address"}))[0] == 404
    assert (await kizuna.api("POST", path + "/messages", json={"text": "   "}))[0] == 400
    assert (await kizuna.api("POST", path + "/messages", json={"text": "a" * 5001}))[0] == 400
    assert (await kizuna.api("POST", "/api/v1/conversations/999999/messages", json={"text": "hi"}))[0] == 404
    assert len(kizuna.emulator.messages_to(user.user_id)) == 1
    status, detail = await kizuna.api("GET", path)
    assert detail["status"] == "pending" and detail["assignee"] is None
