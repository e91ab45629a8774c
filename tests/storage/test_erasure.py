"""Erasure (issue 16 part 3): one customer seeded across every table with distinctive values,
erased over the API, then every text, JSON and binary column of every table (reflected, not
listed by hand) is scanned for those values: nothing. On SQLite the raw database file and its
WAL are read too: nothing in free pages or the log. The same LINE account following again is a
fresh customer. Real app, real database, the LINE emulator over HTTP."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from kizuna.storage import customers, erasure, identities
from kizuna.storage.customer_export import COVERED_TABLES
from kizuna.storage.db import transaction
from kizuna.storage.models import (
    ApiEvent, Campaign, CampaignClick, CampaignRecipient, CampaignVariant, Conversation, ConversationNote, Coupon, CouponGrant,
    Customer, CustomerMerge, CustomerTag, Delivery, FlowState, FriendSource, FriendSourceAttribution, FriendSourceVisit,
    InboundEvent, Interaction, MediaContent, MergeCandidate, Order, OrderItem, SequenceEnrolment, StepSequence,
)
from kizuna.storage.types import utcnow
from sqlmodel import SQLModel
from tests.conftest import eventually

NAME = "絆テスト太郎"
EMAIL = "kizuna.erase.7731@example.jp"
EMAIL_MERGED = "kizuna.erase.merged.7731@example.jp"
PHONE = "+819055501234"
TYPED = "消去テスト用のひみつメッセージ8842"
EXTERNAL = "EC-ERASE-55821"
PICTURE = "https://example.com/kizuna-erase-pic-4411.png"
STATUS = "ひとことERASE-3390"


def test_export_and_erasure_cover_every_table_that_names_a_customer():
    """A new table with a customer_id or line_user_id must be added to the export and the erase."""
    naming = {table.name for table in SQLModel.metadata.sorted_tables
              if {"customer_id", "line_user_id", "other_customer_id", "merged_customer_id"} & set(table.columns.keys())}
    assert naming - COVERED_TABLES == set()


async def _processed(kizuna, line_user_id: str, kind: str, text: str | None = None) -> None:
    async def there() -> bool:
        async with kizuna.sessions() as session:
            statement = sa.select(sa.func.count()).select_from(Interaction).join(Customer, Customer.id == Interaction.customer_id).where(
                Customer.line_user_id == line_user_id, Interaction.kind == kind)
            if text is not None:
                statement = statement.where(Interaction.text == text)
            return (await session.execute(statement)).scalar_one() > 0

    await eventually(there, what=f"{kind} processed")


async def seed(kizuna) -> tuple[str, int]:
    """One customer in every table, with the distinctive values; (LINE user id, customer id)."""
    emulator = kizuna.emulator
    user = emulator.add_user(NAME, picture_url=PICTURE, status_message=STATUS)
    await emulator.follow(user.user_id)
    await _processed(kizuna, user.user_id, "follow")
    await emulator.send_text(user.user_id, "担当者")  # a support conversation
    async def handed_off() -> bool:
        async with kizuna.sessions() as session:
            return (await session.execute(sa.select(sa.func.count()).select_from(Conversation))).scalar_one() > 0
    await eventually(handed_off, what="the handoff")
    await emulator.send_text(user.user_id, TYPED)
    await _processed(kizuna, user.user_id, "message.text", TYPED)
    await emulator.send_image(user.user_id)
    await _processed(kizuna, user.user_id, "message.image")
    now = utcnow()
    async with transaction(kizuna.sessions) as session:
        customer = await customers.get_by_line_user_id(session, user.user_id)
        customers.complete_registration(customer, profile={
            "full_name": NAME, "birthday": date(1988, 4, 1), "gender": "male", "prefecture": "東京都", "phone": PHONE, "email": EMAIL,
        }, marketing_opt_in=True, consented_at=now, at=now)
        cid = customer.id
        await identities.add(session, [(cid, "email", EMAIL), (cid, "phone", PHONE), (cid, "external_customer_id", EXTERNAL)],
                             source="test", now=now)
        merged = Customer(full_name=NAME, email=EMAIL_MERGED, merged_into_id=cid)
        session.add(merged)
        await session.flush()
        await identities.add(session, [(merged.id, "email", EMAIL_MERGED)], source="test", now=now)
        session.add(CustomerMerge(customer_id=cid, merged_customer_id=merged.id, moved={"orders": []},
                                  filled={"email": EMAIL_MERGED, "full_name": NAME}, merged_by="admin@example.com"))
        other = Customer(display_name="別人")
        session.add(other)
        await session.flush()
        session.add(MergeCandidate(customer_id=min(cid, other.id), other_customer_id=max(cid, other.id), kind="phone",
                                   value=PHONE, source=f"order:{EXTERNAL}"))
        order = Order(external_id=EXTERNAL, customer_id=cid, ordered_at=now, total=5500, channel="ec", store=f"{NAME}様宅配",
                      fingerprint="f" * 64)
        session.add(order)
        await session.flush()
        session.add(OrderItem(order_id=order.id, line_no=1, sku="SKU-1", name="化粧水", quantity=1, unit_price=5500))
        coupon = Coupon(title="登録クーポン", discount_type="amount", discount_value=500, valid_days=30)
        session.add(coupon)
        await session.flush()
        session.add(CouponGrant(coupon_id=coupon.id, customer_id=cid, code="KZE-ERASE-1", per_customer_key="once",
                                expires_at=now + timedelta(days=30)))
        campaign = Campaign(name="冬のセール", status="completed")
        session.add(campaign)
        await session.flush()
        variant = CampaignVariant(campaign_id=campaign.id, label="A", percent=100,
                                  messages=[{"type": "text", "text": "{name}さんへ"}], method="push")
        session.add(variant)
        await session.flush()
        session.add(CampaignRecipient(campaign_id=campaign.id, customer_id=cid, variant_id=variant.id, batch_seq=0, status="queued",
                                      line_user_id=user.user_id))
        session.add(CampaignClick(campaign_id=campaign.id, variant_id=variant.id, customer_id=cid, link=0))
        session.add(Delivery(customer_id=cid, sender_type="campaign", kind="message", status="sent", method="push",
                             messages=[{"type": "text", "text": f"{NAME}さん、冬のセールです"}], retry_key="erase-test-retry-key-0001"))
        sequence = StepSequence(name="ようこそ", trigger="registered", steps=[{"delay_minutes": 0, "messages": []}])
        session.add(sequence)
        await session.flush()
        session.add(SequenceEnrolment(sequence_id=sequence.id, customer_id=cid, next_due_at=now + timedelta(days=3)))
        await session.execute(sa.delete(FlowState).where(FlowState.customer_id == cid))
        session.add(FlowState(customer_id=cid, flow="registration", state="registration.email",
                              data={"full_name": NAME, "phone": PHONE, "note": TYPED}, expires_at=now + timedelta(hours=1)))
        session.add(CustomerTag(customer_id=cid, tag=f"{NAME}さん担当"))
        conversation = (await session.execute(sa.select(Conversation).where(Conversation.customer_id == cid))).scalar_one()
        conversation.labels = [f"{NAME}"]
        session.add(ConversationNote(conversation_id=conversation.id, author="staff:1", text=f"{NAME}様 {EMAIL} 折り返し希望: {TYPED}"))
        session.add(ApiEvent(type="cart_abandoned", customer_id=cid, data={"email": EMAIL, "name": NAME}))
        source = FriendSource(code="erase-src", name="店頭POP")
        session.add(source)
        await session.flush()
        session.add(FriendSourceAttribution(line_user_id=user.user_id, source_id=source.id, customer_id=cid))
        session.add(FriendSourceVisit(source_id=source.id, line_user_id=user.user_id))
        image = (await session.execute(sa.select(InboundEvent.payload).where(
            InboundEvent.line_user_id == user.user_id, InboundEvent.event_type == "message"))).scalars().all()
        message_id = next(p["message"]["id"] for p in image if p["message"]["type"] == "image")
        session.add(MediaContent(message_id=message_id, content_type="image/png", size=64,
                                 data=b"\x89PNG" + TYPED.encode() + EMAIL.encode()))
    status, body = await kizuna.api("POST", "/api/v1/cart-events", json={
        "external_id": "CART-ERASE-9911", "occurred_at": now.isoformat(), "kind": "added", "sku": "SKU-1", "email": EMAIL,
        "name": f"{NAME}のお気に入り"})
    assert status in (200, 201), body
    return user.user_id, cid


def _forms(value: str) -> list[str]:
    """How a value may be stored: as is, and JSON-escaped (SQLite keeps JSON ASCII-escaped)."""
    return sorted({value, json.dumps(value)[1:-1]})


async def scan(kizuna, values: list[str]) -> list[str]:
    """Every table (reflected) and every column that can hold text, JSON or bytes: the hits."""
    hits = []
    engine = kizuna.sessions.kw["bind"]
    async with engine.connect() as connection:
        metadata = sa.MetaData()
        await connection.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in (await connection.execute(sa.select(table))).mappings():
                for column, value in row.items():
                    if value is None or isinstance(value, (int, float, bool)) or hasattr(value, "isoformat"):
                        continue
                    if isinstance(value, (bytes, memoryview)):
                        text = bytes(value).decode("utf-8", "replace")
                    elif isinstance(value, (dict, list)):
                        text = json.dumps(value, ensure_ascii=False) + json.dumps(value)
                    else:
                        text = str(value)
                    hits += [f"{table.name}.{column}: {needle!r}" for seed in values for needle in _forms(seed) if needle in text]
    return hits


def _raw_files(kizuna) -> bytes:
    """The SQLite database file and its WAL, byte for byte."""
    path = Path(kizuna.settings.database_url.split(":///", 1)[1])
    return b"".join(file.read_bytes() for file in (path, path.with_name(path.name + "-wal")) if file.exists())


async def test_an_erased_customer_is_nowhere_in_the_database_nor_its_files(kizuna):
    line_user_id, customer_id = await seed(kizuna)
    values = [NAME, EMAIL, EMAIL_MERGED, PHONE, TYPED, EXTERNAL, PICTURE, STATUS, line_user_id]
    before = await scan(kizuna, values)
    # Seeded where the issue says: the customer row, identities, the timeline, the webhook's raw
    # payloads, notes, deliveries, flow state, media, merges, the campaign's copy of the LINE id ...
    for where in ("customers.display_name", "customers.email", "customer_identities.value", "interactions.text",
                  "inbound_events.payload", "conversation_notes.text", "deliveries.messages", "flow_states.data",
                  "media_contents.data", "customer_merges.filled", "merge_candidates.value", "campaign_recipients.line_user_id",
                  "orders.external_id", "api_events.data", "customer_tags.tag", "friend_source_visits.line_user_id"):
        assert any(hit.startswith(where) for hit in before), (where, before)

    sqlite = kizuna.settings.database_url.startswith("sqlite")
    if sqlite:
        # Into the main file first (as a long-running shop's data is), so the erase must overwrite
        # it there: and the file scan below can see the values (before the erase, it does).
        assert await erasure.checkpoint(kizuna.sessions.kw["bind"])
        assert [form for form in _forms(TYPED) if form.encode() in _raw_files(kizuna)]

    status, answer = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/erase", json={"channel": "email"})
    assert status == 200, answer
    assert answer["kind"] == "erase" and answer["status"] == "done" and answer["customer_id"] == customer_id
    assert answer["channel"] == "email" and not answer["overdue"]

    after = await scan(kizuna, values)
    assert after == [], after  # the audit log included: it names customers by id only
    async with kizuna.sessions() as session:
        erased = await session.get(Customer, customer_id)
        assert erased.erased_at is not None and erased.line_user_id is None and erased.full_name is None
        # aggregates that name nobody stay
        [order] = (await session.execute(sa.select(Order).where(Order.customer_id == customer_id))).scalars()
        assert order.total == 5500
        assert (await session.execute(sa.select(sa.func.count()).select_from(CouponGrant)
                                      .where(CouponGrant.customer_id == customer_id))).scalar_one() == 1
        [enrolment] = (await session.execute(sa.select(SequenceEnrolment).where(SequenceEnrolment.customer_id == customer_id))).scalars()
        assert enrolment.status == "exited"

    if sqlite:
        raw = _raw_files(kizuna)
        assert len(raw) > 0
        needles = [form.encode() for value in values for form in _forms(value)]
        assert [needle for needle in needles if needle in raw] == []

    # The same LINE account following again: a fresh customer, nothing of the old one.
    await kizuna.emulator.follow(line_user_id)
    await _processed(kizuna, line_user_id, "follow")
    fresh = await kizuna.customer_id(line_user_id)
    assert fresh != customer_id
    status, export = await kizuna.api("GET", f"/api/v1/customers/{fresh}/export")
    assert status == 200
    assert export["orders"] == [] and export["coupon_grants"] == [] and export["conversations"] == []
    assert [row["kind"] for row in export["timeline"]] == ["follow", "message.text"][: len(export["timeline"])] or \
        all(row["kind"] in ("follow", "message.text", "message.flex") for row in export["timeline"])
    assert export["customer"]["full_name"] is None and export["customer"]["registered"] is False

    status, again = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/erase", json={})
    assert status == 409 and again["error"]["code"] == "already_erased"
