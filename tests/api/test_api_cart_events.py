"""POST /api/v1/cart-events against a running Kizuna (real HTTP, real database): one event or a
batch, each on its customer's timeline as `cart.<kind>`, idempotent on external_id, a bad event
refused with nothing stored, and an event for a registered customer's e-mail on their LINE
timeline."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kizuna.console import timeline
from kizuna.console.i18n import translate
from kizuna.storage.models import CartEvent, Customer, CustomerIdentity, Interaction
from tests.flows.test_registration import Chat, walk_to


def an_event(external_id: str = "CE-1", kind: str = "added", **fields) -> dict:
    return {"external_id": external_id, "occurred_at": "2026-12-01T10:30:00+09:00", "kind": kind, "email": "hanako@example.com",
            "sku": "SH-01", "name": "シャンプー", "category": "ヘアケア", "quantity": 2, "unit_price": 3300, "cart_id": "cart-77",
            **fields}


async def cart_rows(kizuna) -> list[tuple[int, str, dict]]:
    """(customer id, kind, payload) of every cart row on any timeline, in the order written."""
    async with kizuna.sessions() as session:
        rows = await session.execute(
            sa.select(Interaction.customer_id, Interaction.kind, Interaction.payload)
            .where(Interaction.kind.like("cart.%")).order_by(Interaction.id)
        )
        return [tuple(row) for row in rows]


async def customer_with(kizuna, kind: str, value: str) -> int:
    async with kizuna.sessions() as session:
        return (await session.execute(
            sa.select(CustomerIdentity.customer_id).where(CustomerIdentity.kind == kind, CustomerIdentity.value == value)
        )).scalar_one()


async def count(kizuna, model) -> int:
    async with kizuna.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(model))).scalar_one()


async def test_an_event_lands_on_its_customers_timeline_once_however_often_it_is_sent(kizuna):
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=an_event())
    assert (status, body) == (200, {"created": 1, "unchanged": 0, "customers_created": 1, "merge_candidates": 0}), body
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=an_event())
    assert (status, body["created"], body["unchanged"], body["customers_created"]) == (200, 0, 1, 0), body
    # Sent again with other contents: the first report stands.
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=an_event(quantity=5))
    assert (status, body["created"], body["unchanged"]) == (200, 0, 1), body

    hanako = await customer_with(kizuna, "email", "hanako@example.com")
    rows = await cart_rows(kizuna)
    assert [(customer, kind) for customer, kind, _ in rows] == [(hanako, "cart.added")]
    payload = rows[0][2]
    assert (payload["sku"], payload["quantity"], payload["unit_price"], payload["cart_id"]) == ("SH-01", 2, 3300, "cart-77")
    assert payload["occurred_at"] == "2026-12-01T10:30:00+09:00"


async def test_a_batch_puts_each_event_on_the_right_customer(kizuna):
    batch = {"events": [
        an_event("CE-1"),
        an_event("CE-2", email="taro@example.com", sku="TR-02"),
        an_event("CE-3", kind="checkout_started", sku=None, email="HANAKO@example.com"),
        an_event("CE-4", kind="abandoned", sku=None, email=None, phone="090-1234-5678"),
    ]}
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=batch)
    assert (status, body["created"], body["customers_created"]) == (200, 4, 3), body
    hanako = await customer_with(kizuna, "email", "hanako@example.com")
    taro = await customer_with(kizuna, "email", "taro@example.com")
    by_phone = await customer_with(kizuna, "phone", "+819012345678")
    assert len({hanako, taro, by_phone}) == 3
    assert [(customer, kind, payload["external_id"]) for customer, kind, payload in await cart_rows(kizuna)] == [
        (hanako, "cart.added", "CE-1"), (taro, "cart.added", "CE-2"), (hanako, "cart.checkout_started", "CE-3"),
        (by_phone, "cart.abandoned", "CE-4"),
    ]


async def test_a_bad_event_is_named_and_nothing_of_its_batch_is_stored(kizuna):
    batch = {"events": [an_event("CE-1"), an_event("CE-2", kind="bought")]}
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=batch)
    assert (status, body["error"]["field"]) == (400, "events[1].kind"), body

    batch["events"][1] = an_event("CE-2", sku=None)  # added, but what?
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=batch)
    assert (status, body["error"]["field"]) == (400, "events[1]"), body
    assert "sku" in body["error"]["message"]

    batch["events"][1] = an_event("CE-1")
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=batch)
    assert (status, body["error"]["field"]) == (400, "events[1].external_id"), body

    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=an_event(occurred_at="2026-12-01 10:30"))
    assert (status, body["error"]["field"]) == (400, "occurred_at"), body
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=an_event(email=None))
    assert status == 400 and "customer reference" in body["error"]["message"], body

    assert await cart_rows(kizuna) == []
    assert await count(kizuna, CartEvent) == 0 and await count(kizuna, Customer) == 0


async def test_a_registered_customers_e_mail_puts_the_event_on_their_line_timeline(kizuna):
    user = kizuna.emulator.add_user(display_name="山田 花子", language="ja")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await walk_to(chat, "registration.confirm")  # registers with hanako@example.com and 090-1234-5678
    await chat.say("登録する")

    status, body = await kizuna.api("POST", "/api/v1/cart-events", json=an_event(email="Hanako@Example.com"))
    assert (status, body["created"], body["customers_created"]) == (200, 1, 0), body
    added = [row for row in await kizuna.timeline(user.user_id) if row["kind"] == "cart.added"]
    assert len(added) == 1 and added[0]["payload"]["external_id"] == "CE-1"


async def test_the_console_timeline_says_what_happened_to_the_cart_in_japanese(kizuna):
    batch = {"events": [an_event("CE-1"), an_event("CE-2", kind="abandoned", sku=None)]}
    assert (await kizuna.api("POST", "/api/v1/cart-events", json=batch))[0] == 200
    async with kizuna.sessions() as session:
        stored = list((await session.execute(
            sa.select(Interaction).where(Interaction.kind.like("cart.%")).order_by(Interaction.id))).scalars())
    items = timeline.build(stored, staff={}, customer_name="山田 花子", timezone=ZoneInfo("Asia/Tokyo"),
                           t=lambda key, **values: translate("ja", key, **values))
    shown = [translate("ja", item.label, **item.values) for item in items if item.type == "system"]
    assert shown == ["カートに追加: シャンプー × 2", "カート放棄（購入せず離脱）"]
    assert translate("en", items[1].label, **items[1].values) == "Added to cart: シャンプー × 2"
