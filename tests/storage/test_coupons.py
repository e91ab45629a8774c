"""Coupons in storage: rules on coupons, issuing, one per customer, stock, redeeming,
revoking, and the timeline rows they leave. Real database (SQLite, or PostgreSQL when
KIZUNA_TEST_DATABASE_URL is set)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.storage import coupons
from kizuna.storage.coupon_codes import generate_code, parse_code
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Coupon, CouponGrant, Customer, Interaction

JST = timezone(timedelta(hours=9))
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=JST)  # a fixed moment, shop time


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def new_customers(sessions, count: int, prefix: str = "U") -> list[int]:
    async with transaction(sessions) as session:
        rows = [Customer(line_user_id=f"{prefix}{i:032d}") for i in range(count)]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def new_coupon(sessions, **fields) -> Coupon:
    values = {"title": "初回500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 30, **fields}
    async with transaction(sessions) as session:
        return await coupons.create_coupon(session, values, now=NOW)


async def issue(sessions, coupon_id: int, customer_id: int, now: datetime = NOW) -> coupons.IssueResult:
    async with transaction(sessions) as session:
        return await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=now)


async def redeem(sessions, code: str, now: datetime = NOW, **kwargs) -> CouponGrant:
    async with transaction(sessions) as session:
        return await coupons.redeem(session, code_text=code, shop_code="KZN", by=kwargs.get("by", "pos-1"), where=kwargs.get("where"), now=now)


async def redeem_error(sessions, code: str, now: datetime = NOW) -> coupons.RedeemError:
    with pytest.raises(coupons.RedeemError) as info:
        await redeem(sessions, code, now)
    return info.value


async def timeline_kinds(sessions, customer_id: int) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(sa.select(Interaction.kind).where(Interaction.customer_id == customer_id).order_by(Interaction.id))
        return list(rows.scalars())


async def issued_count(sessions, coupon_id: int) -> int:
    async with sessions() as session:
        return (await coupons.get_coupon(session, coupon_id)).issued_count


# -- the rules on a coupon ------------------------------------------------------------------

VALID = {"title": "10%OFF", "discount_type": "percent", "discount_value": 10, "valid_days": 7}
CHECKED_DEFAULTS = {"one_per_customer": True, "active": True}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "あ" * 41}, "title"),
        ({"discount_type": "yen"}, "discount_type"),
        ({"discount_value": 101}, "discount_value"),
        ({"discount_value": 0}, "discount_value"),
        ({"discount_type": "amount", "discount_value": -500}, "discount_value"),
        ({"discount_value": True}, "discount_value"),
        ({"valid_days": None}, "valid_days"),
        ({"valid_days": 0}, "valid_days"),
        ({"valid_until": datetime(2026, 12, 31)}, "valid_until"),  # naive: whose midnight?
        ({"valid_from": datetime(2027, 1, 1, tzinfo=JST), "valid_until": datetime(2026, 12, 31, tzinfo=JST)}, "valid_until"),
        ({"stock": -1}, "stock"),
        ({"image_url": "http://example.com/a.png"}, "image_url"),
        ({"trigger": "birthday"}, "trigger"),
        ({"active": None}, "active"),
    ],
)
def test_a_coupon_that_breaks_a_rule_is_refused_and_names_the_field(change, field):
    with pytest.raises(coupons.CouponInvalid) as info:
        coupons.check_coupon(coupons._clean({**CHECKED_DEFAULTS, **VALID, **change}))
    assert info.value.field == field


async def test_nothing_is_saved_when_a_rule_is_broken(sessions):
    with pytest.raises(coupons.CouponInvalid) as info:
        async with transaction(sessions) as session:
            await coupons.create_coupon(session, {**VALID, "discount_value": 101})
    assert info.value.field == "discount_value"
    with pytest.raises(coupons.CouponInvalid) as info:
        async with transaction(sessions) as session:
            await coupons.create_coupon(session, {**VALID, "bogus": 1})
    assert info.value.field == "bogus"
    async with sessions() as session:
        assert await coupons.list_coupons(session) == []


async def test_percent_100_amount_and_fixed_dates_are_accepted(sessions):
    async with transaction(sessions) as session:
        full = await coupons.create_coupon(session, {**VALID, "discount_value": 100})
        fixed = await coupons.create_coupon(session, {"title": "年末", "discount_type": "amount", "discount_value": 1000,
                                                      "valid_until": datetime(2026, 12, 31, 23, 59, 59, tzinfo=JST), "stock": 0})
    assert full.discount_value == 100 and fixed.valid_days is None and fixed.stock == 0


async def test_update_checks_the_whole_result(sessions):
    coupon = await new_coupon(sessions)  # 500 yen off
    with pytest.raises(coupons.CouponInvalid) as info:
        async with transaction(sessions) as session:
            await coupons.update_coupon(session, coupon.id, {"discount_type": "percent"})  # 500 %
    assert info.value.field == "discount_value"
    async with transaction(sessions) as session:
        updated = await coupons.update_coupon(session, coupon.id, {"discount_type": "percent", "discount_value": 15, "stock": None})
    assert (updated.discount_type, updated.discount_value, updated.stock) == ("percent", 15, None)
    async with transaction(sessions) as session:
        assert await coupons.update_coupon(session, 999_999, {"title": "x"}) is None


async def test_stock_cannot_go_below_what_was_issued_and_one_per_customer_is_fixed_once_issued(sessions):
    [a, b] = await new_customers(sessions, 2)
    coupon = await new_coupon(sessions, stock=5)
    await issue(sessions, coupon.id, a)
    await issue(sessions, coupon.id, b)
    for change, field in (({"stock": 1}, "stock"), ({"one_per_customer": False}, "one_per_customer")):
        with pytest.raises(coupons.CouponInvalid) as info:
            async with transaction(sessions) as session:
                await coupons.update_coupon(session, coupon.id, change)
        assert info.value.field == field
    async with transaction(sessions) as session:
        assert (await coupons.update_coupon(session, coupon.id, {"stock": 2})).stock == 2


async def test_registration_coupon_is_the_newest_active_one(sessions):
    async with sessions() as session:
        assert await coupons.registration_coupon(session) is None
    older = await new_coupon(sessions, trigger="registration")
    newer = await new_coupon(sessions, trigger="registration", title="新しい")
    await new_coupon(sessions, title="ふつう")
    async with sessions() as session:
        assert (await coupons.registration_coupon(session)).id == newer.id
    async with transaction(sessions) as session:
        await coupons.update_coupon(session, newer.id, {"active": False})
    async with sessions() as session:
        assert (await coupons.registration_coupon(session)).id == older.id


# -- issuing --------------------------------------------------------------------------------


async def test_issue_gives_a_code_of_the_shop_that_expires_at_the_end_of_the_last_day(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions, valid_days=30)
    result = await issue(sessions, coupon.id, customer)
    assert result.created and result.refusal is None
    grant = result.grant
    assert parse_code(grant.code, "KZN") == grant.code
    assert grant.status == "issued" and grant.customer_id == customer
    # Issued 24 Nov 15:30 JST, 30 days: valid through 24 Dec, so until 25 Dec 00:00 JST.
    assert grant.expires_at == datetime(2026, 12, 25, 0, 0, tzinfo=JST)
    assert result.coupon.issued_count == 1 and await issued_count(sessions, coupon.id) == 1
    assert await timeline_kinds(sessions, customer) == ["coupon.issued"]
    async with sessions() as session:
        row = (await session.execute(sa.select(Interaction).where(Interaction.customer_id == customer))).scalar_one()
    assert row.direction == "sys"
    assert row.payload["code"] == grant.code and row.payload["coupon_id"] == coupon.id and row.payload["title"] == "初回500円OFF"


async def test_a_fixed_end_caps_valid_days(sessions):
    [customer] = await new_customers(sessions, 1)
    end = datetime(2026, 12, 1, 0, 0, tzinfo=JST)
    coupon = await new_coupon(sessions, valid_days=30, valid_until=end)
    assert (await issue(sessions, coupon.id, customer)).grant.expires_at == end


async def test_one_per_customer_gives_the_same_grant_back(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions, stock=10)
    first = await issue(sessions, coupon.id, customer)
    again = await issue(sessions, coupon.id, customer)
    assert again.created is False and again.refusal is None and again.grant.id == first.grant.id
    assert await issued_count(sessions, coupon.id) == 1
    assert await timeline_kinds(sessions, customer) == ["coupon.issued"]


async def test_a_repeatable_coupon_gives_a_new_code_each_time(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions, one_per_customer=False)
    codes = {(await issue(sessions, coupon.id, customer)).grant.code for _ in range(3)}
    assert len(codes) == 3 and await issued_count(sessions, coupon.id) == 3


async def test_stock_runs_out_and_nothing_is_left_behind_by_a_refusal(sessions):
    customers = await new_customers(sessions, 3)
    coupon = await new_coupon(sessions, stock=2)
    results = [await issue(sessions, coupon.id, customer) for customer in customers]
    assert [r.created for r in results] == [True, True, False]
    assert results[2].refusal == "out_of_stock" and results[2].grant is None
    assert await issued_count(sessions, coupon.id) == 2
    assert await timeline_kinds(sessions, customers[2]) == []
    # Whoever got one keeps it.
    again = await issue(sessions, coupon.id, customers[0])
    assert again.grant.id == results[0].grant.id and again.refusal is None


async def test_stock_zero_issues_nothing(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions, stock=0)
    assert (await issue(sessions, coupon.id, customer)).refusal == "out_of_stock"


async def test_refusals_inactive_not_yet_valid_and_ended(sessions):
    [customer] = await new_customers(sessions, 1)
    inactive = await new_coupon(sessions, active=False)
    later = await new_coupon(sessions, valid_from=NOW + timedelta(days=1))
    ended = await new_coupon(sessions, valid_until=NOW - timedelta(seconds=1))
    assert (await issue(sessions, inactive.id, customer)).refusal == "inactive"
    assert (await issue(sessions, later.id, customer)).refusal == "not_yet_valid"
    assert (await issue(sessions, ended.id, customer)).refusal == "ended"
    assert (await issue(sessions, later.id, customer, now=NOW + timedelta(days=2))).created
    async with sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(CouponGrant))).scalar_one() == 1


async def test_unknown_customer_or_coupon_changes_nothing(sessions):
    coupon = await new_coupon(sessions)
    [customer] = await new_customers(sessions, 1)
    with pytest.raises(LookupError):
        await issue(sessions, coupon.id, 987_654)
    with pytest.raises(LookupError):
        await issue(sessions, 987_654, customer)
    assert await issued_count(sessions, coupon.id) == 0


async def test_a_refusal_or_error_undoes_only_the_grant_not_the_callers_work(sessions):
    [first, second] = await new_customers(sessions, 2)
    sold_out = await new_coupon(sessions, stock=1)
    other = await new_coupon(sessions, title="もう一枚")
    await issue(sessions, sold_out.id, first)
    async with transaction(sessions) as session:  # e.g. the registration step's transaction
        session.add(Interaction(customer_id=second, direction="sys", kind="registration.completed", sender_type="system"))
        await session.flush()
        with pytest.raises(LookupError):  # a foreign key error inside: PostgreSQL's transaction survives it
            await coupons.issue(session, coupon_id=other.id, customer_id=987_654, now=NOW)
        assert (await coupons.issue(session, coupon_id=sold_out.id, customer_id=second, now=NOW)).refusal == "out_of_stock"
        assert (await coupons.issue(session, coupon_id=other.id, customer_id=second, now=NOW)).created
    assert await timeline_kinds(sessions, second) == ["registration.completed", "coupon.issued"]
    assert (await issued_count(sessions, sold_out.id), await issued_count(sessions, other.id)) == (1, 1)


async def test_a_coupon_deactivated_between_the_read_and_the_stock_update_is_undone(database_url):
    """The pre-read said "active"; by the guarded UPDATE it is not (another till, another
    process): the grant and its timeline row go back to the savepoint, the caller's work stays."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)

    @sa.event.listens_for(engine.sync_engine, "before_cursor_execute")
    def deactivate_just_before(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE coupons SET issued_count"):
            cursor.execute("UPDATE coupons SET active = false")

    try:
        [customer] = await new_customers(sessions, 1)
        coupon = await new_coupon(sessions)
        async with transaction(sessions) as session:
            session.add(Interaction(customer_id=customer, direction="sys", kind="registration.completed", sender_type="system"))
            result = await coupons.issue(session, coupon_id=coupon.id, customer_id=customer, now=NOW)
        # (The simulated change ran inside the savepoint, so it was undone too and the
        # re-read reason is "out_of_stock"; a real one, committed elsewhere, reads "inactive".)
        assert result.grant is None and result.refusal in ("inactive", "out_of_stock")
        assert await timeline_kinds(sessions, customer) == ["registration.completed"]
        async with sessions() as session:
            assert (await session.execute(sa.select(sa.func.count()).select_from(CouponGrant))).scalar_one() == 0
            assert (await coupons.get_coupon(session, coupon.id)).issued_count == 0
    finally:
        await engine.dispose()


async def test_a_code_collision_draws_another_code(sessions, monkeypatch):
    [a, b] = await new_customers(sessions, 2)
    coupon = await new_coupon(sessions)
    taken = (await issue(sessions, coupon.id, a)).grant.code
    fresh = generate_code("KZN")
    draws = iter([taken, taken, fresh])
    monkeypatch.setattr(coupons, "generate_code", lambda prefix: next(draws))
    result = await issue(sessions, coupon.id, b)
    assert result.created and result.grant.code == fresh
    assert await issued_count(sessions, coupon.id) == 2


# -- the customer's coupons -----------------------------------------------------------------


async def test_grants_of_customer_newest_first_and_valid_only(sessions):
    [customer] = await new_customers(sessions, 1)
    short = await new_coupon(sessions, title="短い", valid_days=1)
    long = await new_coupon(sessions, title="長い", valid_days=60)
    used = await new_coupon(sessions, title="使用済み")
    await issue(sessions, short.id, customer)
    await issue(sessions, long.id, customer)
    used_code = (await issue(sessions, used.id, customer)).grant.code
    await redeem(sessions, used_code)
    async with sessions() as session:
        every = await coupons.grants_of_customer(session, customer, valid_only=False)
        valid_now = await coupons.grants_of_customer(session, customer, valid_only=True, now=NOW)
        valid_later = await coupons.grants_of_customer(session, customer, valid_only=True, now=NOW + timedelta(days=3))
    assert [c.title for _, c in every] == ["使用済み", "長い", "短い"]
    assert [c.title for _, c in valid_now] == ["長い", "短い"]
    assert [c.title for _, c in valid_later] == ["長い"]
    assert coupons.grant_state(every[2][0], NOW + timedelta(days=3)) == "expired"
    assert coupons.grant_state(every[0][0], NOW) == "redeemed"


# -- redeeming and revoking -----------------------------------------------------------------


async def test_redeem_once_then_already_redeemed(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions)
    code = (await issue(sessions, coupon.id, customer)).grant.code
    typed = code.lower().replace("-", " ")  # what a clerk types is fine
    grant = await redeem(sessions, typed, by="レジ端末A", where="shibuya-2")
    assert (grant.status, grant.redeemed_by, grant.redeemed_where, grant.redeemed_at) == ("redeemed", "レジ端末A", "shibuya-2", NOW)
    error = await redeem_error(sessions, code, NOW + timedelta(minutes=5))
    assert error.code == "already_redeemed" and error.details["redeemed_at"] == NOW
    assert await timeline_kinds(sessions, customer) == ["coupon.issued", "coupon.redeemed"]


async def test_redeem_refuses_expired_revoked_unknown_and_bad_text(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions, one_per_customer=False, valid_days=1)
    expiring = (await issue(sessions, coupon.id, customer)).grant
    revoked = (await issue(sessions, coupon.id, customer)).grant
    async with transaction(sessions) as session:
        await coupons.revoke(session, grant_id=revoked.id, by="admin", now=NOW)

    assert (await redeem_error(sessions, expiring.code, expiring.expires_at)).code == "expired"
    assert (await redeem_error(sessions, revoked.code)).code == "revoked"
    assert (await redeem_error(sessions, generate_code("KZN"))).code == "unknown"
    assert (await redeem_error(sessions, generate_code("ABC"))).code == "other_shop"
    assert (await redeem_error(sessions, "hello")).code == "malformed"
    typo = expiring.code[:-1] + ("0" if expiring.code[-1] != "0" else "1")
    assert (await redeem_error(sessions, typo)).code == "bad_check"
    # Just before expiry it still works.
    assert (await redeem(sessions, expiring.code, expiring.expires_at - timedelta(seconds=1))).status == "redeemed"
    assert (await timeline_kinds(sessions, customer)).count("coupon.redeemed") == 1


async def test_revoke_is_idempotent_and_refuses_a_redeemed_grant(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions, one_per_customer=False)
    first = (await issue(sessions, coupon.id, customer)).grant
    second = (await issue(sessions, coupon.id, customer)).grant
    await redeem(sessions, second.code)
    for _ in range(2):
        async with transaction(sessions) as session:
            grant = await coupons.revoke(session, grant_id=first.id, by="admin", now=NOW)
        assert grant.status == "revoked" and grant.revoked_at == NOW
    with pytest.raises(coupons.CouponError) as info:
        async with transaction(sessions) as session:
            await coupons.revoke(session, grant_id=second.id, by="admin", now=NOW)
    assert info.value.code == "already_redeemed"
    with pytest.raises(LookupError):
        async with transaction(sessions) as session:
            await coupons.revoke(session, grant_id=987_654, by="admin", now=NOW)
    assert (await timeline_kinds(sessions, customer)).count("coupon.revoked") == 1


async def test_find_grant_by_code_accepts_typed_forms(sessions):
    [customer] = await new_customers(sessions, 1)
    coupon = await new_coupon(sessions)
    code = (await issue(sessions, coupon.id, customer)).grant.code
    async with sessions() as session:
        assert (await coupons.find_grant_by_code(session, code.lower())).code == code
        assert await coupons.find_grant_by_code(session, "nonsense") is None
