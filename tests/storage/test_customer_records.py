"""Customer records from the shop's systems: matched like orders, details applied without
overriding what a LINE member told us, tags added, idempotent. Real database."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from kizuna.storage import customer_records, customers, identities
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Customer, CustomerRecordCreate, CustomerTag, MergeCandidate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
LINE_ID = "U" + "b" * 32


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def record(**fields) -> CustomerRecordCreate:
    values = {"external_customer_id": "C-001", "name": "山田 花子", "kana": "ヤマダ ハナコ", "email": "Hanako@Example.com",
              "phone": "090-1234-5678", "birthday": "1990-01-31", "gender": "女性", "prefecture": "大阪", "tags": ["EC会員"]}
    values.update(fields)
    return CustomerRecordCreate.model_validate({key: value for key, value in values.items() if value is not ...})


async def upsert(sessions, *records: CustomerRecordCreate) -> customer_records.RecordsResult:
    async with transaction(sessions) as session:
        return await customer_records.upsert(session, list(records), now=NOW, source="test")


async def rows(sessions, statement):
    async with sessions() as session:
        return (await session.execute(statement)).all()


def test_values_are_read_as_japanese_exports_write_them():
    parsed = record()
    assert (parsed.email, parsed.phone, parsed.gender, parsed.prefecture, parsed.birthday) == (
        "hanako@example.com", "+819012345678", "female", "大阪府", date(1990, 1, 31))
    with pytest.raises(ValidationError, match="not a prefecture"):
        record(prefecture="アトランティス")
    with pytest.raises(ValidationError, match="needs a customer reference"):
        record(external_customer_id=None, email=None, phone=None)


async def test_a_new_record_creates_a_customer_and_the_same_again_changes_nothing(sessions):
    result = await upsert(sessions, record())
    assert (result.created, result.updated, result.unchanged) == (1, 0, 0)
    assert await rows(sessions, sa.select(Customer.line_user_id, Customer.full_name, Customer.name_kana, Customer.email,
                                          Customer.phone, Customer.gender, Customer.prefecture, Customer.registered)) == [
        (None, "山田 花子", "ヤマダ ハナコ", "hanako@example.com", "+819012345678", "female", "大阪府", False)]
    assert await rows(sessions, sa.select(CustomerTag.tag)) == [("EC会員",)]
    result = await upsert(sessions, record())
    assert (result.created, result.updated, result.unchanged) == (0, 0, 1)
    result = await upsert(sessions, record(prefecture="東京", tags=["VIP"], name=None))
    assert (result.created, result.updated) == (0, 1)
    assert await rows(sessions, sa.select(Customer.full_name, Customer.prefecture)) == [("山田 花子", "東京都")]
    assert sorted(await rows(sessions, sa.select(CustomerTag.tag))) == [("EC会員",), ("VIP",)]


async def test_a_registered_line_customer_keeps_what_they_gave(sessions):
    async with transaction(sessions) as session:
        customer, _ = await customers.get_or_create(session, LINE_ID, None)
        customers.complete_registration(customer, profile={"full_name": "山田 はな子", "phone": "+819012345678"},
                                        marketing_opt_in=False, consented_at=NOW, at=NOW)
        await identities.link_profile(session, customer, source="registration", now=NOW)
    result = await upsert(sessions, record())  # matched by phone
    assert (result.created, result.updated) == (0, 1)
    assert await rows(sessions, sa.select(Customer.id, Customer.full_name, Customer.name_kana, Customer.email)) == [
        (customer.id, "山田 はな子", "ヤマダ ハナコ", "hanako@example.com")]


async def test_a_record_matching_two_customers_lists_them(sessions):
    await upsert(sessions, record(phone=None), record(external_customer_id="C-002", email="other@example.com", phone="090-1111-2222"))
    result = await upsert(sessions, record(external_customer_id="C-003", email="hanako@example.com", phone="090-1111-2222"))
    assert (result.created, result.merge_candidates) == (0, 1)
    assert await rows(sessions, sa.select(MergeCandidate.customer_id, MergeCandidate.other_customer_id, MergeCandidate.kind)) == [
        (1, 2, "phone")]
