"""The privacy API: notice versions (admins publish), a customer's consent ledger; bad input is a
clear 4xx and changes nothing. Same tests on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

from kizuna.storage import tokens
from kizuna.storage.db import transaction
from tests.flows.test_registration import Chat, walk_to

PURPOSES = {"membership": "会員サービスの提供", "marketing": "お知らせの配信", "analytics": "購買傾向の分析"}
NOTICE = {"version": "2027-04", "url": "https://shop.example.jp/privacy/2027-04", "text": "第2版の本文", "purposes": PURPOSES}


async def token_of(kizuna, role: str) -> str:
    async with transaction(kizuna.sessions) as session:
        _token, plain = await tokens.create(session, name=f"{role}-token", role=role)
    return plain


async def test_publishing_a_version_makes_it_current_and_bad_input_changes_nothing(kizuna):
    status, listed = await kizuna.api("GET", "/api/v1/privacy-notices")
    assert status == 200 and [item["version"] for item in listed["items"]] == ["1"] and listed["items"][0]["current"]

    for bad, field in (({**NOTICE, "url": "http://shop.example.jp/privacy"}, "url"),
                       ({**NOTICE, "url": "javascript:alert(1)"}, "url"),
                       ({**NOTICE, "purposes": {**PURPOSES, "marketing": " "}}, "purposes.marketing"),
                       ({**NOTICE, "purposes": {"membership": "x", "marketing": "y"}}, "purposes.analytics"),
                       ({**NOTICE, "version": "a\nb"}, "version"),
                       ({**NOTICE, "extra": 1}, "extra")):
        status, body = await kizuna.api("POST", "/api/v1/privacy-notices", json=bad)
        assert status == 400 and body["error"]["code"] == "invalid_field", (bad, body)
        assert body["error"]["field"] == field, (field, body)
    marketer = await token_of(kizuna, "marketer")
    status, body = await kizuna.api("POST", "/api/v1/privacy-notices", json=NOTICE, token=marketer)
    assert status == 403
    assert len((await kizuna.api("GET", "/api/v1/privacy-notices"))[1]["items"]) == 1  # nothing published

    status, published = await kizuna.api("POST", "/api/v1/privacy-notices", json=NOTICE)
    assert status == 201, published
    assert (published["version"], published["url"], published["purposes"], published["current"]) == (
        "2027-04", NOTICE["url"], PURPOSES, True)
    assert published["published_by"] == "token:tests"
    status, body = await kizuna.api("POST", "/api/v1/privacy-notices", json=NOTICE)
    assert status == 409 and body["error"]["code"] == "version_taken"

    status, listed = await kizuna.api("GET", "/api/v1/privacy-notices", token=marketer)
    assert status == 200 and [(i["version"], i["current"]) for i in listed["items"]] == [("2027-04", True), ("1", False)]
    # The bot's consent question links the new version.
    chat = Chat(kizuna.emulator, kizuna.emulator.add_user(display_name="新しい人").user_id)
    [consent] = await chat.tap("action=register")
    assert NOTICE["url"] in consent["text"]


async def test_a_customers_consent_ledger(kizuna):
    user = kizuna.emulator.add_user(display_name="山田 花子")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.confirm")
    await chat.say("登録する")
    customer_id = await kizuna.customer_id(user.user_id)
    await chat.tap("action=marketing&value=off")

    support = await token_of(kizuna, "support")
    status, body = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/consents", token=support)
    assert status == 200, body
    assert body["customer_id"] == customer_id and body["privacy_notice_id"] is not None
    assert [(row["purpose"], row["action"], row["notice_version"], row["channel"], row["actor"]) for row in body["items"]] == [
        ("marketing", "withdrawn", "1", "line_chat", "customer"),
        ("marketing", "granted", "1", "line_chat", "customer"),
        ("analytics", "granted", "1", "line_chat", "customer"),
        ("membership", "granted", "1", "line_chat", "customer"),
    ]
    status, body = await kizuna.api("GET", "/api/v1/customers/999999/consents")
    assert status == 404
    pos = await token_of(kizuna, "pos")
    status, body = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/consents", token=pos)
    assert status == 403
