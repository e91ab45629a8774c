"""POST /api/v1/orders against a running Kizuna (real HTTP, real database): one order or a batch,
idempotent, 400s that name the order and field, and an order for a registered LINE customer's
e-mail on that customer's timeline."""

from __future__ import annotations

import sqlalchemy as sa

from kizuna.storage import tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, MergeCandidate, Order, OrderItem
from tests.conftest import eventually
from tests.flows.test_registration import Chat, walk_to


def an_order(external_id: str = "EC-1001", **fields) -> dict:
    return {"external_id": external_id, "ordered_at": "2026-12-01T10:30:00+09:00", "total": 5500, "channel": "ec",
            "email": "hanako@example.com",
            "items": [{"sku": "SH-01", "name": "シャンプー", "category": "ヘアケア", "quantity": 1, "unit_price": 3300},
                      {"sku": "TR-02", "name": "トリートメント", "category": "ヘアケア", "quantity": 1, "unit_price": 2200}],
            **fields}


async def count(kizuna, model) -> int:
    async with kizuna.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(model))).scalar_one()


async def test_one_order_then_the_same_again_then_a_change(kizuna):
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order())
    assert status == 200, body
    assert body == {"created": 1, "updated": 0, "unchanged": 0, "customers_created": 1, "merge_candidates": 0}
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order())
    assert (status, body["unchanged"], body["created"], body["updated"]) == (200, 1, 0, 0)
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order(status="returned"))
    assert (status, body["updated"]) == (200, 1)
    assert await count(kizuna, Order) == 1 and await count(kizuna, OrderItem) == 2 and await count(kizuna, Customer) == 1


async def test_a_batch_is_stored_whole_or_not_at_all(kizuna):
    batch = {"orders": [an_order("A"), an_order("B", phone="090-1234-5678"), an_order("C")]}
    batch["orders"][2]["items"][1]["quantity"] = 0
    status, body = await kizuna.api("POST", "/api/v1/orders", json=batch)
    assert status == 400, body
    assert body["error"]["field"] == "orders[2].items[1].quantity"
    assert await count(kizuna, Order) == 0 and await count(kizuna, Customer) == 0

    batch["orders"][2]["items"][1]["quantity"] = 2
    batch["orders"][1]["phone"] = "12-34"
    status, body = await kizuna.api("POST", "/api/v1/orders", json=batch)
    assert (status, body["error"]["field"]) == (400, "orders[1].phone"), body

    batch["orders"][1]["phone"] = "０９０−１２３４−５６７８"
    batch["orders"].append(an_order("A"))
    status, body = await kizuna.api("POST", "/api/v1/orders", json=batch)
    assert (status, body["error"]["field"]) == (400, "orders[3].external_id"), body
    batch["orders"].pop()

    del batch["orders"][0]["email"]
    status, body = await kizuna.api("POST", "/api/v1/orders", json=batch)
    assert (status, body["error"]["field"]) == (400, "orders[0]"), body
    assert "customer reference" in body["error"]["message"]
    assert await count(kizuna, Order) == 0

    batch["orders"][0]["external_customer_id"] = "C-1"
    status, body = await kizuna.api("POST", "/api/v1/orders", json=batch)
    assert (status, body["created"], body["customers_created"]) == (200, 3, 2), body


async def test_the_fields_of_one_order_are_named_as_sent(kizuna):
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order(ordered_at="2026-12-01 10:30"))
    assert (status, body["error"]["field"]) == (400, "ordered_at"), body
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order(channel="phone"))
    assert (status, body["error"]["field"]) == (400, "channel"), body
    status, body = await kizuna.api("POST", "/api/v1/orders", json={"orders": []})
    assert (status, body["error"]["field"]) == (400, "orders"), body


async def test_a_till_may_send_orders(kizuna):
    async with transaction(kizuna.sessions) as session:
        _token, pos = await tokens.create(session, name="till-1", role="pos")
    status, body = await kizuna.api("POST", "/api/v1/orders", token=pos, json=an_order(channel="store", store="渋谷店"))
    assert (status, body["created"]) == (200, 1), body


async def test_an_order_for_a_registered_customers_e_mail_lands_on_their_line_timeline(kizuna):
    user = kizuna.emulator.add_user(display_name="山田 花子", language="ja")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await walk_to(chat, "registration.confirm")  # registers with hanako@example.com and 090-1234-5678
    await chat.say("登録する")

    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order(email="HANAKO@example.com"))
    assert (status, body["customers_created"]) == (200, 0), body
    timeline = await kizuna.timeline(user.user_id)
    placed = [row for row in timeline if row["kind"] == "order.placed"]
    assert len(placed) == 1 and placed[0]["payload"]["external_id"] == "EC-1001"
    # By phone alone, as a till types it, too.
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order("POS-1", email=None, phone="09012345678"))
    assert (status, body["customers_created"]) == (200, 0), body

    async def two_orders() -> bool:
        return len([row for row in await kizuna.timeline(user.user_id) if row["kind"] == "order.placed"]) == 2

    await eventually(two_orders, what="both orders on the timeline")


async def test_a_line_customer_registering_with_an_ec_customers_e_mail_is_a_merge_candidate(kizuna):
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order())
    assert status == 200, body
    user = kizuna.emulator.add_user(display_name="山田 花子", language="ja")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await walk_to(chat, "registration.confirm")
    await chat.say("登録する")
    async with kizuna.sessions() as session:
        pairs = (await session.execute(sa.select(MergeCandidate.kind, MergeCandidate.source))).all()
    assert pairs == [("email", "registration")]


async def test_customer_records_then_their_orders(kizuna):
    record = {"external_customer_id": "C-001", "name": "山田 花子", "kana": "ヤマダ ハナコ", "email": "hanako@example.com",
              "gender": "female", "prefecture": "東京都", "tags": ["EC会員"]}
    status, body = await kizuna.api("POST", "/api/v1/customers", json=record)
    assert (status, body) == (200, {"created": 1, "updated": 0, "unchanged": 0, "merge_candidates": 0}), body
    status, body = await kizuna.api("POST", "/api/v1/customers", json={"customers": [record, {**record, "phone": "12"}]})
    assert (status, body["error"]["field"]) == (400, "customers[1].phone"), body
    status, body = await kizuna.api("POST", "/api/v1/customers", json={"customers": [record]})
    assert (status, body["unchanged"]) == (200, 1), body
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order(email=None, external_customer_id="C-001"))
    assert (status, body["customers_created"]) == (200, 0), body


async def test_an_admin_merges_the_ec_customer_into_the_line_member_and_undoes_it(kizuna):
    status, body = await kizuna.api("POST", "/api/v1/orders", json=an_order())
    user = kizuna.emulator.add_user(display_name="山田 花子", language="ja")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await walk_to(chat, "registration.confirm")
    await chat.say("登録する")
    status, body = await kizuna.api("GET", "/api/v1/merge-candidates")
    assert status == 200 and len(body["items"]) == 1, body
    candidate = body["items"][0]
    status, merged = await kizuna.api("POST", f"/api/v1/merge-candidates/{candidate['id']}/merge")
    assert status == 200, merged
    line_id = await kizuna.customer_id(user.user_id)
    assert merged["customer_id"] == line_id and merged["moved"]["orders"]
    assert any(row["kind"] == "order.placed" for row in await kizuna.timeline(user.user_id))
    status, body = await kizuna.api("POST", f"/api/v1/merge-candidates/{candidate['id']}/merge")
    assert (status, body["error"]["code"]) == (409, "not_pending")
    status, body = await kizuna.api("GET", f"/api/v1/customers/{merged['merged_customer_id']}")
    assert (status, body["merged_into_id"]) == (200, line_id)
    status, body = await kizuna.api("POST", f"/api/v1/customer-merges/{merged['id']}/undo")
    assert (status, body["undone_by"]) == (200, "token:tests"), body
    assert not any(row["kind"] == "order.placed" for row in await kizuna.timeline(user.user_id))
    status, body = await kizuna.api("POST", f"/api/v1/merge-candidates/{candidate['id']}/dismiss")
    assert (status, body["status"]) == (200, "dismissed")
    status, body = await kizuna.api("GET", "/api/v1/merge-candidates")
    assert body["items"] == []
