"""Orders in storage: the batch upsert (idempotent on external_id, updates on change), customers
found by their normalised identities, new customers for strangers, merge candidates on conflict,
and the timeline rows. Real database (SQLite, or PostgreSQL when KIZUNA_TEST_DATABASE_URL is set)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from kizuna.storage import customers, identities, orders
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.identity_values import BadIdentity, normalise
from kizuna.storage.models import (
    Customer, CustomerIdentity, Interaction, MergeCandidate, Order, OrderCreate, OrderItem,
)

JST = timezone(timedelta(hours=9))
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
LINE_ID = "U" + "a" * 32


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def order(external_id: str = "A-1", **fields) -> OrderCreate:
    values = {"external_id": external_id, "ordered_at": "2026-12-01T10:30:00+09:00", "total": 3300,
              "email": "hanako@example.com", "channel": "ec",
              "items": [{"sku": "SH-01", "name": "シャンプー", "category": "ヘアケア", "quantity": 1, "unit_price": 3300}]}
    values.update(fields)
    return OrderCreate.model_validate({key: value for key, value in values.items() if value is not ...})


async def upsert(sessions, *batch: OrderCreate, source: str = "test") -> orders.UpsertResult:
    async with transaction(sessions) as session:
        return await orders.upsert(session, list(batch), now=NOW, source=source)


async def rows(sessions, statement):
    async with sessions() as session:
        return (await session.execute(statement)).all()


async def counts(sessions) -> dict[str, int]:
    tables = {"customers": Customer, "orders": Order, "items": OrderItem, "timeline": Interaction,
              "identities": CustomerIdentity, "candidates": MergeCandidate}
    found = {}
    for name, model in tables.items():
        found[name] = (await rows(sessions, sa.select(sa.func.count()).select_from(model)))[0][0]
    return found


async def line_customer(sessions, line_user_id: str = LINE_ID) -> int:
    async with transaction(sessions) as session:
        customer, _ = await customers.get_or_create(session, line_user_id, None)
        return customer.id


# -- normalisation ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "typed", "stored"), [
    ("phone", "090-1234-5678", "+819012345678"),
    ("phone", "０９０−１２３４−５６７８", "+819012345678"),  # full-width digits and minus
    ("phone", "090ー1234ー5678", "+819012345678"),  # a kana-mode dash
    ("phone", "+81 3-1234-5678", "+81312345678"),
    ("email", "  Hanako.Yamada@Example.CO.JP ", "hanako.yamada@example.co.jp"),
    ("email", "ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｃｏｍ", "hanako@example.com"),
    ("external_customer_id", "Ｃ－００１", "C-001"),
    ("line_user_id", LINE_ID, LINE_ID),
])
def test_identities_are_normalised(kind, typed, stored):
    assert normalise(kind, typed) == stored


@pytest.mark.parametrize(("kind", "typed"), [
    ("phone", "090-1234"), ("phone", "0120-ABC-DEF"), ("email", "hanako"), ("email", "a b@example.com"),
    ("line_user_id", "U123"), ("external_customer_id", " "),
])
def test_values_that_identify_nobody_are_refused(kind, typed):
    with pytest.raises(BadIdentity):
        normalise(kind, typed)


def test_an_order_needs_a_customer_reference_and_an_offset():
    with pytest.raises(ValidationError, match="needs a customer reference"):
        order(email=None)
    with pytest.raises(ValidationError, match="timezone"):
        order(ordered_at="2026-12-01T10:30:00")
    with pytest.raises(ValidationError, match="phone"):
        order(phone="12")


# -- idempotency and change -------------------------------------------------------------------

async def test_a_new_order_creates_its_customer_identities_items_and_timeline_row(sessions):
    result = await upsert(sessions, order(phone="090-1234-5678"))
    assert (result.created, result.updated, result.unchanged, result.customers_created) == (1, 0, 0, 1)
    assert await counts(sessions) == {"customers": 1, "orders": 1, "items": 1, "timeline": 1, "identities": 2, "candidates": 0}
    (customer,) = await rows(sessions, sa.select(Customer.line_user_id, Customer.registered))
    assert customer == (None, False)  # known only from the EC site
    assert sorted(await rows(sessions, sa.select(CustomerIdentity.kind, CustomerIdentity.value))) == [
        ("email", "hanako@example.com"), ("phone", "+819012345678")]
    (row,) = await rows(sessions, sa.select(Interaction.kind, Interaction.direction, Interaction.payload))
    assert row[0] == "order.placed" and row[1] == "sys"
    assert row[2]["external_id"] == "A-1" and row[2]["total"] == 3300 and row[2]["items"] == 1


async def test_a_resent_identical_order_changes_nothing(sessions):
    await upsert(sessions, order(), order("A-2"))
    before = await counts(sessions)
    stamps = await rows(sessions, sa.select(Order.id, Order.updated_at).order_by(Order.id))
    # The same moment written in UTC instead of JST is the same order.
    result = await upsert(sessions, order(ordered_at="2026-12-01T01:30:00Z"), order("A-2"))
    assert (result.created, result.updated, result.unchanged, result.customers_created) == (0, 0, 2, 0)
    assert await counts(sessions) == before
    assert await rows(sessions, sa.select(Order.id, Order.updated_at).order_by(Order.id)) == stamps


async def test_a_changed_order_is_updated_and_its_items_replaced(sessions):
    await upsert(sessions, order())
    items = [{"sku": "TR-02", "name": "トリートメント", "category": "ヘアケア", "quantity": 2, "unit_price": 2000}]
    result = await upsert(sessions, order(total=4000, items=items))
    assert (result.created, result.updated) == (0, 1)
    assert await rows(sessions, sa.select(Order.total, Order.status)) == [(4000, "completed")]
    assert await rows(sessions, sa.select(OrderItem.line_no, OrderItem.sku, OrderItem.quantity)) == [(1, "TR-02", 2)]
    result = await upsert(sessions, order(total=4000, items=items, status="cancelled"))
    assert result.updated == 1
    kinds = await rows(sessions, sa.select(Interaction.kind).order_by(Interaction.id))
    assert [kind for (kind,) in kinds] == ["order.placed", "order.updated", "order.cancelled"]
    assert (await counts(sessions))["customers"] == 1


async def test_one_batch_names_each_order_once(sessions):
    with pytest.raises(Invalid) as error:
        await upsert(sessions, order("A-1"), order("A-2"), order("A-1"))
    assert error.value.field == "orders[2].external_id"
    assert (await counts(sessions))["orders"] == 0


# -- one customer per person -------------------------------------------------------------------

async def test_orders_find_their_customer_by_any_identity_however_typed(sessions):
    await upsert(sessions, order("A-1", email="Hanako@Example.com", phone="090-1234-5678"))
    result = await upsert(sessions, order("A-2", email=None, phone="０９０１２３４５６７８"),
                          order("A-3", email="HANAKO@EXAMPLE.COM"))
    assert (result.created, result.customers_created) == (2, 0)
    assert len({customer for (customer,) in await rows(sessions, sa.select(Order.customer_id))}) == 1


async def test_orders_of_one_batch_sharing_a_reference_share_a_new_customer(sessions):
    result = await upsert(sessions, order("A-1", email="a@example.com"),
                          order("A-2", email="a@example.com", phone="090-1111-2222"),
                          order("A-3", email=None, phone="090-1111-2222"),
                          order("B-1", email="b@example.com"))
    assert result.customers_created == 2
    owners = dict(await rows(sessions, sa.select(Order.external_id, Order.customer_id)))
    assert owners["A-1"] == owners["A-2"] == owners["A-3"] != owners["B-1"]


async def test_a_record_matching_two_customers_is_a_merge_candidate_not_a_merge(sessions):
    await upsert(sessions, order("A-1", email="a@example.com"), order("B-1", email=None, phone="090-1111-2222"))
    (first, second) = [customer for (customer,) in await rows(sessions, sa.select(Customer.id).order_by(Customer.id))]
    # The phone is the second customer's, the e-mail the first's: e-mail comes first by precedence.
    result = await upsert(sessions, order("C-1", email="a@example.com", phone="090-1111-2222"))
    assert (result.created, result.customers_created, result.merge_candidates) == (1, 0, 1)
    assert (await rows(sessions, sa.select(Order.customer_id).where(Order.external_id == "C-1"))) == [(first,)]
    assert await rows(sessions, sa.select(MergeCandidate.customer_id, MergeCandidate.other_customer_id, MergeCandidate.kind,
                                          MergeCandidate.source, MergeCandidate.status)) == [
        (first, second, "phone", "order:C-1", "pending")]
    # Found again: still one candidate.
    await upsert(sessions, order("C-2", email="a@example.com", phone="090-1111-2222"))
    assert (await counts(sessions))["candidates"] == 1
    assert (await counts(sessions))["customers"] == 2


async def test_a_line_user_id_wins_over_an_e_mail(sessions):
    await upsert(sessions, order("A-1", email="a@example.com"))
    line = await line_customer(sessions)
    await upsert(sessions, order("A-2", email="a@example.com", line_user_id=LINE_ID))
    assert await rows(sessions, sa.select(Order.customer_id).where(Order.external_id == "A-2")) == [(line,)]
    assert (await counts(sessions))["candidates"] == 1


async def test_an_order_for_an_unknown_line_user_id_creates_that_line_customer(sessions):
    await upsert(sessions, order(email=None, line_user_id=LINE_ID))
    async with transaction(sessions) as session:
        customer, created = await customers.get_or_create(session, LINE_ID, None)
    assert not created  # their first message on LINE finds the customer the order made
    assert await rows(sessions, sa.select(Order.customer_id)) == [(customer.id,)]


async def test_an_order_with_a_registered_customers_e_mail_lands_on_their_timeline(sessions):
    line = await line_customer(sessions)
    async with transaction(sessions) as session:
        customer = await session.get(Customer, line)
        customers.complete_registration(customer, profile={"email": "hanako@example.com", "phone": "+819012345678"},
                                        marketing_opt_in=True, consented_at=NOW, at=NOW)
        await identities.link_profile(session, customer, source="registration", now=NOW)
    await upsert(sessions, order(email="Hanako@Example.com"))
    assert await rows(sessions, sa.select(Interaction.customer_id, Interaction.kind)) == [(line, "order.placed")]


async def test_registering_with_an_ec_customers_e_mail_records_a_merge_candidate(sessions):
    await upsert(sessions, order(email="hanako@example.com"))
    ec = (await rows(sessions, sa.select(Customer.id)))[0][0]
    line = await line_customer(sessions)
    async with transaction(sessions) as session:
        customer = await session.get(Customer, line)
        customers.complete_registration(customer, profile={"email": "hanako@example.com"},
                                        marketing_opt_in=False, consented_at=NOW, at=NOW)
        assert await identities.link_profile(session, customer, source="registration", now=NOW) == 1
    assert await rows(sessions, sa.select(MergeCandidate.customer_id, MergeCandidate.other_customer_id,
                                          MergeCandidate.kind, MergeCandidate.source)) == [
        (ec, line, "email", "registration")]


async def test_a_line_user_id_named_later_goes_on_the_customer_known_by_e_mail(sessions):
    await upsert(sessions, order("A-1"))
    await upsert(sessions, order("A-2", line_user_id=LINE_ID))
    (customer,) = await rows(sessions, sa.select(Customer.id, Customer.line_user_id))
    assert customer[1] == LINE_ID
    async with transaction(sessions) as session:
        found, created = await customers.get_or_create(session, LINE_ID, None)
    assert (found.id, created) == (customer[0], False)


async def test_two_writers_racing_for_a_new_customer_never_fail(sessions):
    """Two batches at once, both naming the same new e-mail: on SQLite one waits for the other
    (one customer); on PostgreSQL both may create one, and the loser's claim on the e-mail
    becomes a merge candidate instead of an error."""
    import asyncio

    await asyncio.gather(*(upsert(sessions, order(f"R-{n}", email="race@example.com", phone=f"090-2222-{n:04d}"))
                           for n in range(1, 5)))
    found = await counts(sessions)
    assert found["orders"] == 4
    assert found["customers"] - 1 <= found["candidates"]
    holders = await rows(sessions, sa.select(CustomerIdentity.customer_id).where(CustomerIdentity.value == "race@example.com"))
    assert len(holders) == 1


def test_the_fingerprint_is_the_one_stored_before_plain_orders():
    """Orders stored before `orders.Plain` carry a hash of the model's JSON: the same order sent
    again must still be recognised as unchanged (not updated once after an upgrade)."""
    import hashlib
    import json

    def by_the_model(given: OrderCreate) -> str:
        data = given.model_dump(mode="json", exclude={"ordered_at"})
        data["ordered_at"] = given.ordered_at.astimezone(timezone.utc).isoformat()
        return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    samples = [
        order(), order(channel=..., email=..., phone="03-1234-5678", store="渋谷店", status="returned", items=[]),
        order(line_user_id=LINE_ID, external_customer_id="Ｃ－１", total=0,
              items=[{"sku": "A", "unit_price": 0}, {"sku": "B", "name": "名前", "quantity": 3, "unit_price": 10}]),
    ]
    for sample in samples:
        assert orders.fingerprint(sample) == by_the_model(sample)
    assert len({orders.fingerprint(sample) for sample in samples}) == 3


async def test_a_large_batch_racing_another_for_the_same_new_orders_stores_each_once(sessions, database_url):
    """On PostgreSQL a large batch COPYs its new orders straight in; when another writer stores
    the same orders meanwhile, that COPY fails on the unique external_id and the batch takes the
    ON CONFLICT way instead: both writers succeed, every order is stored once, with its lines
    and one timeline row."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the COPY path is PostgreSQL's")
    import asyncio

    batch = [order(f"L-{n:03d}", email=f"l{n}@example.com") for n in range(150)]
    first = sessions()
    await first.begin()
    await orders.upsert(first, batch, now=NOW, source="first")  # not committed yet: holds the new rows
    second = asyncio.create_task(upsert(sessions, *batch, source="second"))

    async def second_waits() -> bool:  # for the first writer's rows (a lock wait), not done
        waiting = await rows(sessions, sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                "AND datname = current_database()"))
        return waiting[0][0] >= 1

    from tests.conftest import eventually

    await eventually(second_waits, what="the second writer to wait for the first")
    await first.commit()
    await first.close()
    result = await asyncio.wait_for(second, timeout=30)
    assert result.created == 0 and result.unchanged + result.updated == 150
    found = await counts(sessions)
    assert found["orders"] == 150
    assert len(await rows(sessions, sa.select(OrderItem.id))) == 150
    assert len(await rows(sessions, sa.select(Interaction.id).where(Interaction.kind == "order.placed"))) == 150
