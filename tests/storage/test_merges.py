"""Merging two customers an order or a registration found to be one person, and undoing it.
Real database."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.campaigns import segments
from kizuna.storage import audit, customers, identities, merges, orders, tags
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.errors import Conflict
from kizuna.storage.models import (
    AuditEntry, Customer, CustomerIdentity, CustomerMetrics, CustomerTag, Interaction, MergeCandidate, Order, OrderCreate,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
ADMIN = audit.Actor("admin@example.com", 1)
LINE_ID = "U" + "c" * 32


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def rows(sessions, statement):
    async with sessions() as session:
        return (await session.execute(statement)).all()


async def ec_then_line(sessions) -> tuple[int, int, int]:
    """An EC customer with two orders, a tag and a kana name; then a LINE member registering with their e-mail."""
    order = {"ordered_at": "2026-12-01T10:30:00+09:00", "total": 3300, "email": "hanako@example.com"}
    async with transaction(sessions) as session:
        await orders.upsert(session, [OrderCreate.model_validate({**order, "external_id": name}) for name in ("A-1", "A-2")],
                            now=NOW, source="test")
        ec = (await session.execute(sa.select(Customer))).scalar_one()
        ec.name_kana, ec.birthday = "ヤマダ ハナコ", date(1990, 1, 31)
        await tags.add(session, ec.id, "EC会員", actor=ADMIN)
        line, _ = await customers.get_or_create(session, LINE_ID, None)
        customers.complete_registration(line, profile={"full_name": "山田 花子", "email": "hanako@example.com"},
                                        marketing_opt_in=True, consented_at=NOW, at=NOW)
        await identities.link_profile(session, line, source="registration", now=NOW)
        candidate = (await session.execute(sa.select(MergeCandidate.id))).scalar_one()
        return ec.id, line.id, candidate


async def test_merging_moves_everything_to_the_line_customer_and_undo_puts_it_back(sessions):
    ec, line, candidate = await ec_then_line(sessions)
    async with transaction(sessions) as session:
        record = await merges.merge(session, candidate, actor=ADMIN, now=NOW)
    assert (record.customer_id, record.merged_customer_id) == (line, ec)  # the one on LINE stays
    assert await rows(sessions, sa.select(Order.customer_id).distinct()) == [(line,)]
    assert await rows(sessions, sa.select(CustomerTag.customer_id, CustomerTag.tag)) == [(line, "EC会員")]
    assert {customer for (customer,) in await rows(sessions, sa.select(CustomerIdentity.customer_id))} == {line}
    assert await rows(sessions, sa.select(Customer.full_name, Customer.name_kana, Customer.birthday).where(Customer.id == line)) == [
        ("山田 花子", "ヤマダ ハナコ", date(1990, 1, 31))]
    kinds = [kind for (kind,) in await rows(sessions, sa.select(Interaction.kind).where(Interaction.customer_id == line)
                                            .order_by(Interaction.id))]
    assert kinds == ["order.placed", "order.placed", "customer.merged"]
    assert await rows(sessions, sa.select(MergeCandidate.status)) == [("merged",)]
    # segments see the kept customer's purchases at once (and the merged one has none left, nor is
    # it a member of any segment on its own)
    assert await rows(sessions, sa.select(CustomerMetrics.customer_id, CustomerMetrics.frequency, CustomerMetrics.monetary)) == [
        (line, 2, 6600)]
    async with sessions() as session:
        everyone = await segments.preview(session, {"any": [{"field": "registered", "op": "eq", "value": True},
                                                            {"field": "registered", "op": "eq", "value": False}]}, now=NOW)
    assert everyone.count == 1
    async with sessions() as session:
        listed = await customers.list_page(session, line_user_id=None, limit=10, after_id=None)
    assert [customer.id for customer in listed] == [line]  # the merged one is not listed
    # A new order with the e-mail finds the customer kept.
    async with transaction(sessions) as session:
        result = await orders.upsert(session, [OrderCreate.model_validate(
            {"external_id": "A-3", "ordered_at": "2026-12-03T10:00:00+09:00", "total": 100, "email": "HANAKO@example.com"})],
            now=NOW, source="test")
    assert result.customers_created == 0
    assert await rows(sessions, sa.select(Order.customer_id).where(Order.external_id == "A-3")) == [(line,)]

    async with transaction(sessions) as session:
        await merges.undo(session, record.id, actor=ADMIN, now=NOW + timedelta(days=6))
    owners = dict(await rows(sessions, sa.select(Order.external_id, Order.customer_id)))
    assert owners == {"A-1": ec, "A-2": ec, "A-3": line}  # what came after the merge stays
    metrics = await rows(sessions, sa.select(CustomerMetrics.customer_id, CustomerMetrics.frequency).order_by(CustomerMetrics.customer_id))
    assert metrics == sorted([(ec, 2), (line, 1)])
    assert await rows(sessions, sa.select(CustomerTag.customer_id)) == [(ec,)]
    assert await rows(sessions, sa.select(Customer.name_kana, Customer.merged_into_id).order_by(Customer.id)) == [
        ("ヤマダ ハナコ", None), (None, None)]
    assert await rows(sessions, sa.select(MergeCandidate.status)) == [("pending",)]
    actions = [action for (action,) in await rows(sessions, sa.select(AuditEntry.action).order_by(AuditEntry.id))]
    assert actions[-2:] == ["customer.merged", "customer.unmerged"]
    with pytest.raises(Conflict, match="undone already"):
        async with transaction(sessions) as session:
            await merges.undo(session, record.id, actor=ADMIN, now=NOW)


async def test_an_undo_after_seven_days_and_a_merge_of_two_line_customers_are_refused(sessions):
    _ec, _line, candidate = await ec_then_line(sessions)
    async with transaction(sessions) as session:
        record = await merges.merge(session, candidate, actor=ADMIN, now=NOW)
    with pytest.raises(Conflict) as error:
        async with transaction(sessions) as session:
            await merges.undo(session, record.id, actor=ADMIN, now=NOW + timedelta(days=7, seconds=1))
    assert error.value.code == "undo_expired"

    async with transaction(sessions) as session:
        first, _ = await customers.get_or_create(session, "U" + "d" * 32, None)
        second, _ = await customers.get_or_create(session, "U" + "e" * 32, None)
        await identities.record_candidates(session, [(first.id, second.id, "phone", "+819000000000", "test")], now=NOW)
        pair = (await session.execute(sa.select(MergeCandidate.id).where(MergeCandidate.customer_id == first.id))).scalar_one()
    with pytest.raises(Conflict) as error:
        async with transaction(sessions) as session:
            await merges.merge(session, pair, actor=ADMIN, now=NOW)
    assert error.value.code == "both_on_line"
    async with transaction(sessions) as session:
        await merges.dismiss(session, pair, actor=ADMIN, now=NOW)
    assert await rows(sessions, sa.select(MergeCandidate.status).where(MergeCandidate.id == pair)) == [("dismissed",)]
