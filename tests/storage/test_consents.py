"""The consent ledger's storage (storage/consents.py) and migration 0023, on the suite's backend:
the first notice version and the members registered before it, notice checks, 3-year retention
in bounded batches, the shop's withdrawal setting."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.campaigns import retention as retention_service
from kizuna.storage import consents, retention
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.errors import Conflict, Invalid
from kizuna.storage.migrate import downgrade, upgrade
from kizuna.storage.models import (
    ConsentAction, ConsentChannel, ConsentPurpose, ConsentRecord, Customer, RetentionTrigger, WithdrawalData,
)
from tests.storage.test_migrations import _run, scratch_url  # noqa: F401  (the fixture)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
PURPOSES = {"membership": "会員", "marketing": "お知らせ", "analytics": "分析"}


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def test_0023_publishes_version_1_and_records_the_members_registered_before_it(scratch_url):  # noqa: F811
    upgrade(scratch_url, "0022")
    insert = ("INSERT INTO customers (line_user_id, followed, blocked, registered, marketing_opt_in, privacy_consented_at, "
              "marketing_consent_changed_at, created_at) VALUES ('{line}', true, false, {registered}, {opt_in}, {consented}, {changed}, "
              "CURRENT_TIMESTAMP)")
    _run(scratch_url,
         insert.format(line="U1", registered="true", opt_in="true", consented="'2026-01-10 09:00:00+00'", changed="'2026-01-10 09:05:00+00'"),
         insert.format(line="U2", registered="true", opt_in="false", consented="'2026-02-01 09:00:00+00'", changed="'2026-02-01 09:05:00+00'"),
         insert.format(line="U3", registered="false", opt_in="false", consented="NULL", changed="'2026-03-01 09:00:00+00'"))
    upgrade(scratch_url, "0023")
    [notices] = _run(scratch_url, "SELECT id, version, url, published_by FROM privacy_notices")
    assert notices == [(1, "1", "https://example.com/privacy", "migration 0023")]
    assert _run(scratch_url, "SELECT line_user_id, privacy_notice_id FROM customers ORDER BY id")[0] == [("U1", 1), ("U2", 1), ("U3", None)]
    rows = _run(scratch_url, "SELECT customer_id, purpose, action, notice_id, channel FROM consent_records ORDER BY customer_id, purpose")[0]
    assert rows == [
        (1, "analytics", "granted", 1, "line_chat"), (1, "marketing", "granted", 1, "line_chat"), (1, "membership", "granted", 1, "line_chat"),
        (2, "analytics", "granted", 1, "line_chat"), (2, "marketing", "withdrawn", 1, "line_chat"), (2, "membership", "granted", 1, "line_chat"),
    ]
    assert _run(scratch_url, "SELECT withdrawal_data FROM shops")[0] == [("delete",)]
    for statement, constraint in (
        ("UPDATE shops SET withdrawal_data = 'maybe'", "ck_shops_withdrawal_data"),
        ("INSERT INTO consent_records (customer_id, purpose, action, channel, at) VALUES (1, 'profiling', 'granted', 'api', "
         "CURRENT_TIMESTAMP)", "ck_consent_records_purpose"),
        ("INSERT INTO consent_records (customer_id, purpose, action, channel, at) VALUES (1, 'marketing', 'granted', 'fax', "
         "CURRENT_TIMESTAMP)", "ck_consent_records_channel"),
    ):
        with pytest.raises(sa.exc.IntegrityError, match=constraint):
            _run(scratch_url, statement)
    downgrade(scratch_url, "0022")
    assert _run(scratch_url, "SELECT count(*) FROM customers")[0] == [(3,)]
    upgrade(scratch_url)


async def test_a_notice_is_checked_and_its_label_is_unique(sessions):
    good = {"version": "2027-04", "url": "https://shop.example.jp/privacy", "text": "本文", "purposes": PURPOSES}
    for bad, field in (({**good, "url": "http://shop.example.jp"}, "url"), ({**good, "url": "https://"}, "url"),
                       ({**good, "version": "  "}, "version"), ({**good, "text": "a\x00b"}, "text"),
                       ({**good, "purposes": {**PURPOSES, "profiling": "x"}}, "purposes"),
                       ({**good, "purposes": {"membership": "会員", "marketing": "お知らせ"}}, "purposes.analytics")):
        with pytest.raises(Invalid) as refused:
            consents.check_notice(**bad)
        assert refused.value.field == field, bad
    async with transaction(sessions) as session:
        notice = await consents.publish_notice(session, **good, now=NOW, actor=None)
        assert (await consents.current_notice(session)).id == notice.id
    with pytest.raises(Conflict):
        async with transaction(sessions) as session:
            await consents.publish_notice(session, **good, now=NOW, actor=None)
    async with sessions() as session:
        assert [n.version for n in await consents.list_notices(session)] == ["2027-04", "1"]


async def test_ledger_rows_older_than_three_years_are_purged_and_never_younger(sessions):
    """The retention purge's consent_records kind: 37 months by default, never under 3 years."""
    async with transaction(sessions) as session:
        customer = Customer(line_user_id="U" + "1" * 32)
        session.add(customer)
        await session.flush()
        for days in (3 * 366 + 50, 3 * 366 + 40, 3 * 366 + 35, 3 * 365 - 1, 10):
            consents.record(session, customer.id, (ConsentPurpose.MARKETING,), ConsentAction.GRANTED,
                            channel=ConsentChannel.LINE_CHAT, at=NOW - timedelta(days=days), notice_id=1)
    run = await retention_service.run(sessions, now=NOW, dry_run=False, trigger=RetentionTrigger.CLI, batch=2)
    assert run.counts["consent_records"] == 3
    async with sessions() as session:
        left = (await session.execute(sa.select(ConsentRecord.at).order_by(ConsentRecord.at))).scalars().all()
    assert [NOW - at for at in left] == [timedelta(days=3 * 365 - 1), timedelta(days=10)]
    for period, unit in ((35, "months"), (1000, "days")):
        with pytest.raises(Invalid):
            async with transaction(sessions) as session:
                await retention.set_policy(session, "consent_records", period=period, unit=unit, enabled=True)


async def test_the_withdrawal_setting_takes_delete_or_keep(sessions):
    async with transaction(sessions) as session:
        assert await consents.withdrawal_data(session) == WithdrawalData.DELETE
        assert await consents.set_withdrawal_data(session, "keep", actor=None) == WithdrawalData.KEEP
    with pytest.raises(Invalid):
        async with transaction(sessions) as session:
            await consents.set_withdrawal_data(session, "archive", actor=None)
    async with sessions() as session:
        assert await consents.withdrawal_data(session) == WithdrawalData.KEEP
