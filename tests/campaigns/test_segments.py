"""Segment rules compiled to one SQL select and run on the real database (SQLite, or PostgreSQL
when KIZUNA_TEST_DATABASE_URL is set): every field and op against a small population with a
known answer, invalid rules refused with the path of the problem, hostile values that are only
values, and the presets."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.campaigns import rules as rule_language
from kizuna.campaigns import segments
from kizuna.storage import customer_metrics, orders
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.models import Coupon, CouponGrant, Customer, CustomerMetrics, CustomerTag, OrderCreate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)  # 21:00 in Tokyo: December
DAY = timedelta(days=1)


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def order(external_id: str, email: str, total: int, days_ago: float, sku: str, category: str, status: str = "completed"):
    return OrderCreate.model_validate({
        "external_id": external_id, "ordered_at": (NOW - days_ago * DAY).isoformat(), "total": total, "email": email,
        "status": status, "items": [{"sku": sku, "category": category, "unit_price": total}],
    })


@pytest.fixture
async def people(sessions) -> dict[str, int]:
    """hanako: a registered VIP from Tokyo with three orders; taro: one old order (and a cancelled
    one); ken: blocked, nothing else known."""
    async with transaction(sessions) as session:
        hanako = Customer(line_user_id="U" + "1" * 32, followed=True, registered=True, marketing_opt_in=True, gender="female",
                          prefecture="東京都", birthday=date(1990, 12, 10), followed_at=NOW - 400 * DAY,
                          last_interaction_at=NOW - 2 * DAY, email="hanako@example.com")
        taro = Customer(line_user_id="U" + "2" * 32, followed=True, gender="male", prefecture="大阪府",
                        birthday=date(2000, 2, 29), followed_at=NOW - 30 * DAY, last_interaction_at=NOW - 100 * DAY,
                        email="taro@example.com")
        ken = Customer(line_user_id="U" + "3" * 32, blocked=True)
        session.add_all([hanako, taro, ken])
        await session.flush()
        from kizuna.storage import identities
        for customer in (hanako, taro):
            await identities.link_profile(session, customer, source="test", now=NOW)
        session.add_all([CustomerTag(customer_id=hanako.id, tag="VIP"), CustomerTag(customer_id=taro.id, tag="常連"),
                         CustomerTag(customer_id=ken.id, tag="100%_off")])
        coupon = Coupon(title="誕生日", discount_type="amount", discount_value=500, valid_days=30)
        session.add(coupon)
        await session.flush()
        session.add(CouponGrant(coupon_id=coupon.id, customer_id=hanako.id, code="C1", per_customer_key="once", status="redeemed",
                                expires_at=NOW + 30 * DAY, redeemed_at=NOW - 3 * DAY))
        session.add(CouponGrant(coupon_id=coupon.id, customer_id=taro.id, code="C2", per_customer_key="once", expires_at=NOW + 30 * DAY))
        await orders.upsert(session, [
            order("H-1", "hanako@example.com", 12000, 5, "SH-01", "ヘアケア"),
            order("H-2", "hanako@example.com", 20000, 40, "TR-02", "ヘアケア"),
            order("H-3", "hanako@example.com", 30000, 100, "SK-01", "スキンケア"),
            order("T-1", "taro@example.com", 5000, 200, "SK-9", "スキンケア"),
            order("T-2", "taro@example.com", 50000, 10, "CX-1", "ヘアケア", status="cancelled"),
        ], now=NOW, source="test")
        await customer_metrics.refresh_population(session)
        await session.execute(sa.update(CustomerMetrics).where(CustomerMetrics.customer_id == hanako.id).values(p_alive=0.8, expected_purchases=1.25))
    return {"hanako": hanako.id, "taro": taro.id, "ken": ken.id}


def c(field, op, value, **extra) -> dict:
    return {"field": field, "op": op, "value": value, **extra}


H, T, K = "hanako", "taro", "ken"
CASES = [
    (c("registered", "eq", True), {H}), (c("registered", "ne", True), {T, K}),
    (c("followed", "eq", True), {H, T}), (c("blocked", "eq", True), {K}), (c("marketing_opt_in", "eq", False), {T, K}),
    (c("gender", "eq", "female"), {H}), (c("gender", "ne", "female"), {T, K}), (c("gender", "in", ["male", "other"]), {T}),
    (c("prefecture", "eq", "東京"), {H}), (c("prefecture", "in", ["tokyo", "大阪"]), {H, T}), (c("prefecture", "ne", "東京都"), {T, K}),
    (c("age", "eq", 35), {H}), (c("age", "gte", 26), {H, T}), (c("age", "lt", 30), {T}), (c("age", "between", [30, 40]), {H}),
    (c("age", "in", [26]), {T}), (c("age", "gt", 35), set()), (c("age", "lte", 35), {H, T}), (c("age", "ne", 35), {T, K}),
    (c("birth_month", "eq", 12), {H}), (c("birth_month", "in", [2, 3]), {T}), (c("birth_month", "between", [1, 6]), {T}),
    (c("birth_month", "gt", 6), {H}), (c("birth_month", "lte", 2), {T}), (c("birth_month", "gte", 3), {H}),
    (c("birth_month", "lt", 12), {T}),
    (c("tag", "eq", "VIP"), {H}), (c("tag", "eq", "ＶＩＰ"), {H}), (c("tag", "ne", "VIP"), {T, K}), (c("tag", "in", ["常連", "x"]), {T}),
    (c("tag", "contains", "%"), {K}), (c("tag", "contains", "_"), {K}), (c("tag", "contains", "VI"), {H}),
    (c("recency_days", "lte", 5), {H}), (c("recency_days", "eq", 5), {H}), (c("recency_days", "eq", 4), set()),
    (c("recency_days", "gte", 200), {T}), (c("recency_days", "gt", 200), set()), (c("recency_days", "between", [6, 199]), set()),
    (c("recency_days", "lt", 6), {H}), (c("recency_days", "in", [5, 200]), {H, T}), (c("recency_days", "ne", 5), {T, K}),
    (c("frequency", "eq", 0), {K}), (c("frequency", "gte", 1), {H, T}), (c("frequency", "eq", 3), {H}),
    (c("monetary", "gt", 5000), {H}), (c("monetary", "between", [1, 5000]), {T}), (c("monetary", "lt", 1), {K}),
    (c("rfm_r", "eq", 5), {H}), (c("rfm_r", "lte", 2), {T}), (c("rfm_r", "in", [1, 5]), {H, T}), (c("rfm_r", "gt", 1), {H}),
    (c("rfm_r", "ne", 5), {T, K}), (c("rfm_r", "between", [2, 4]), set()),
    (c("rfm_f", "eq", 3), {H}), (c("rfm_f", "lt", 3), {T}), (c("rfm_m", "gte", 4), {H}), (c("rfm_m", "eq", 1), {T}),
    (c("decile", "eq", 1), {H}), (c("decile", "lte", 2), {H, T}), ({"not": c("decile", "eq", 1)}, {T, K}),
    (c("f2", "eq", True), {H}), (c("f2", "eq", False), {T, K}),
    (c("ltv", "gt", 0), {H, T}), (c("ltv", "gte", 1e9), set()),
    (c("p_alive", "gte", 0.5), {H}), (c("p_alive", "lt", 0.5), set()),
    (c("expected_purchases", "gt", 1), {H}), (c("expected_purchases", "lte", 1), set()),
    (c("purchased_sku", "eq", "SH-01"), {H}), (c("purchased_sku", "eq", "SH-01", within_days=4), set()),
    (c("purchased_sku", "eq", "SH-01", within_days=5), {H}), (c("purchased_sku", "eq", "SK-9"), {T}),
    (c("purchased_sku", "ne", "SH-01"), {T, K}), (c("purchased_sku", "in", ["SK-9", "SH-01"]), {H, T}),
    (c("purchased_sku", "contains", "SK"), {H, T}), (c("purchased_sku", "eq", "CX-1"), set()),  # cancelled: not bought
    (c("purchased_category", "eq", "ヘアケア", within_days=90), {H}), (c("purchased_category", "eq", "スキンケア", within_days=90), set()),
    (c("purchased_category", "eq", "スキンケア"), {H, T}),
    (c("last_interaction_days", "lte", 2), {H}), (c("last_interaction_days", "gt", 30), {T}),
    (c("coupon_redeemed", "eq", True), {H}), (c("coupon_redeemed", "eq", 1), {H}), (c("coupon_redeemed", "eq", 2), set()),
    (c("coupon_redeemed", "eq", False), {T, K}), (c("coupon_redeemed", "ne", True), {T, K}), (c("coupon_redeemed", "in", [2, 1]), {H}),
    (c("coupon_redeemed", "eq", True, within_days=2), set()), (c("coupon_redeemed", "eq", True, within_days=3), {H}),
    (c("followed_days", "gte", 365), {H}), (c("followed_days", "lte", 30), {T}),
    (c("friend_source", "eq", "qr-1"), set()), (c("friend_source", "in", ["qr-1"]), set()), (c("friend_source", "ne", "qr-1"), {H, T, K}),
    ({"all": []}, {H, T, K}),
    ({"all": [c("followed", "eq", True), {"any": [c("gender", "eq", "male"), c("tag", "eq", "VIP")]}]}, {H, T}),
    ({"not": {"any": [c("gender", "eq", "male"), c("tag", "eq", "VIP")]}}, {K}),
    ({"all": [c("purchased_category", "eq", "ヘアケア", within_days=90), c("rfm_r", "gte", 4), c("registered", "eq", True)]}, {H}),
    # Negated conditions on other tables (anti-joins) include the customers who have no rows there:
    # ken has no order and no coupon, taro's only ヘアケア order was cancelled.
    ({"not": c("tag", "eq", "VIP")}, {T, K}), ({"not": c("tag", "ne", "VIP")}, {H}), ({"not": {"not": c("tag", "eq", "VIP")}}, {H}),
    ({"not": c("purchased_category", "eq", "ヘアケア")}, {T, K}), (c("purchased_category", "ne", "スキンケア"), {K}),
    ({"not": c("purchased_sku", "in", ["SH-01", "SK-9"])}, {K}),
    ({"not": c("purchased_category", "eq", "ヘアケア", within_days=30)}, {T, K}),
    ({"not": c("purchased_category", "eq", "ヘアケア", within_days=4)}, {H, T, K}),
    ({"not": c("coupon_redeemed", "eq", False)}, {H}), (c("coupon_redeemed", "in", [False, 1]), {H, T, K}),
    (c("coupon_redeemed", "in", [False, 2]), {T, K}), ({"not": c("coupon_redeemed", "in", [False, 2])}, {H}),
    ({"all": [{"not": c("tag", "eq", "常連")}, {"not": c("purchased_category", "eq", "スキンケア", within_days=300)}]}, {K}),
    # ... and so do they where they cannot be a semi- or anti-join (under any, under not of a group).
    ({"any": [c("tag", "ne", "VIP"), c("purchased_category", "eq", "ヘアケア", within_days=90)]}, {H, T, K}),
    ({"any": [c("gender", "eq", "female"), {"not": c("purchased_sku", "eq", "SK-9")}]}, {H, K}),
    ({"not": {"all": [c("tag", "eq", "VIP"), c("purchased_category", "eq", "ヘアケア")]}}, {T, K}),
    ({"not": {"all": [c("tag", "ne", "VIP"), c("coupon_redeemed", "eq", False)]}}, {H}),
    ({"any": [c("coupon_redeemed", "eq", False), c("tag", "eq", "VIP")]}, {H, T, K}),
    ({"any": [c("coupon_redeemed", "in", [False, 2]), c("blocked", "eq", True)]}, {T, K}),
    # Hostile values are values: nothing matches them, nothing breaks.
    (c("tag", "eq", "' OR 1=1 --"), set()), (c("purchased_sku", "eq", "x'); DROP TABLE customers; --"), set()),
    (c("tag", "contains", "%' OR '1'='1"), set()), (c("purchased_category", "in", ["\" OR \"\"=\"", "1; SELECT 1"]), set()),
]


async def matched(sessions, rule) -> set[int]:
    async with sessions() as session:
        statement = await segments.audience(session, rule, now=NOW)
        return set((await session.execute(statement)).scalars())


async def test_every_field_and_op_gives_the_known_answer(sessions, people):
    names = {customer_id: name for name, customer_id in people.items()}
    wrong = []
    for rule, expected in CASES:
        got = {names[customer_id] for customer_id in await matched(sessions, rule)}
        if got != expected:
            wrong.append((rule, sorted(expected), sorted(got)))
    assert wrong == []
    used = {(rule["field"], rule["op"]) for rule, _ in CASES if "field" in rule}
    assert {field for field, _ in used} == set(rule_language.FIELDS)
    assert {op for _, op in used} == set(rule_language.Op)
    async with sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(Customer))).scalar_one() == 3


async def test_the_rule_compiles_to_one_select_with_bound_values(sessions, people):
    rule = {"all": [c("tag", "eq", "' OR 1=1 --"), c("purchased_sku", "in", ["A", "B"], within_days=30), c("decile", "lte", 2)]}
    async with sessions() as session:
        statement = await segments.audience(session, rule, now=NOW)
        compiled = statement.compile(dialect=session.bind.dialect)
    assert "OR 1=1" not in str(compiled) and "' OR 1=1 --" in compiled.params.values()
    # the select, two semi-joins (EXISTS), and the anti-join that keeps merged customers out
    assert str(compiled).count("SELECT") == 4


async def test_recency_follows_the_clock(sessions, people):
    rule = c("recency_days", "lte", 30)
    async with sessions() as session:
        now_ids = set((await session.execute(await segments.audience(session, rule, now=NOW))).scalars())
        later = set((await session.execute(await segments.audience(session, rule, now=NOW + 26 * DAY))).scalars())
    assert (now_ids, later) == ({people["hanako"]}, set())


@pytest.mark.parametrize(("rule", "field", "message"), [
    ([], "rule", "must be a rule"),
    ("frequency > 1", "rule", "must be a rule"),
    ({"all": [c("frequency", "eq", 1), c("frequency", "eq", "1")]}, "rule.all[1].value", "must be an integer"),
    ({"all": [c("frequency", "eq", 1), c("frequency", "eq", True)]}, "rule.all[1].value", "must be an integer"),
    ({"any": [c("shoe_size", "eq", 1)]}, "rule.any[0].field", "unknown field"),
    ({"not": c("frequency", "like", 1)}, "rule.not.op", "unknown op"),
    (c("registered", "gt", True), "rule.op", "registered takes eq, ne"),
    (c("age", "between", [40, 30]), "rule.value", "low must not be more than high"),
    (c("age", "in", []), "rule.value", "list of 1 to 500"),
    (c("age", "eq", 200), "rule.value", "from 0 to 150"),
    (c("gender", "eq", "woman"), "rule.value", "must be one of"),
    (c("prefecture", "eq", "ニューヨーク"), "rule.value", "prefecture"),
    (c("tag", "eq", ""), "rule.value", "must be text"),
    (c("p_alive", "lt", float("nan")), "rule.value", "must be a number"),
    (c("frequency", "eq", 1, within_days=3), "rule.within_days", "only purchased_sku"),
    (c("purchased_sku", "eq", "A", within_days=0), "rule.within_days", "from 1 to"),
    ({"field": "frequency", "op": "eq"}, "rule.value", "is missing"),
    ({"field": "frequency", "op": "eq", "value": 1, "and": 2}, "rule.and", "is not a key"),
    ({"all": [], "any": []}, "rule.any", "is not allowed beside"),
    ({"any": []}, "rule.any", "at least one"),
    ({"all": {"field": "frequency"}}, "rule.all", "must be a list"),
    ({"all": [{"all": [1]}]}, "rule.all[0].all[0]", "must be a rule"),
])
def test_invalid_rules_name_the_place_of_the_problem(rule, field, message):
    with pytest.raises(Invalid) as error:
        rule_language.check(rule)
    assert error.value.field == field and message in error.value.message


def test_rules_are_limited_in_depth_and_size():
    deep: dict = c("frequency", "eq", 1)
    for _ in range(10):
        deep = {"not": deep}
    with pytest.raises(Invalid, match="nested more than 10"):
        rule_language.check(deep)
    with pytest.raises(Invalid, match="at most 100 conditions"):
        rule_language.check({"all": [c("frequency", "eq", n) for n in range(101)]})
    with pytest.raises(Invalid, match="at most 200 parts"):
        rule_language.check({"all": [{"all": []} for _ in range(300)]})


async def test_presets_are_valid_rules_that_run(sessions, people):
    found = {}
    for preset in segments.presets(NOW):
        found[preset.key] = await matched(sessions, preset.rule)
    assert found["dormant"] == {people["taro"]}
    assert found["birthday_month"] == {people["hanako"]}
    assert set(found) == {"loyal", "dormant", "churn_risk", "new", "f2_candidates", "birthday_month"}


async def test_preview_counts_and_samples(sessions, people):
    async with sessions() as session:
        preview = await segments.preview(session, c("frequency", "gte", 1), now=NOW, sample=1)
    assert preview.count == 2
    [member] = preview.sample
    assert member.customer.id == people["hanako"] and (member.metrics.recency_days, member.metrics.rfm_r) == (5, 5)


async def test_a_merged_customer_is_never_a_member(sessions, people):
    """Whether the rule reads the customers table or only the kept metrics (R, F, M, spend…),
    a customer merged into another is not matched on their own, even with a metrics row left."""
    async with transaction(sessions) as session:
        await session.execute(sa.update(Customer).where(Customer.id == people[T]).values(merged_into_id=people[H]))
    names = {customer_id: name for name, customer_id in people.items()}
    for rule, expected in [(c("frequency", "gte", 1), {H}), (c("rfm_r", "in", [1, 5]), {H}), (c("decile", "lte", 2), {H}),
                           ({"all": [c("frequency", "gte", 1), c("followed", "eq", True)]}, {H}),
                           ({"all": [c("monetary", "gt", 0), c("tag", "ne", "VIP")]}, set()),
                           (c("frequency", "eq", 0), {K}), ({"all": []}, {H, K})]:
        assert {names[customer_id] for customer_id in await matched(sessions, rule)} == expected, rule


async def test_the_segment_list_counts_within_its_budget_and_shows_the_last_count(sessions, people):
    """The console's list: a visit counts while its time budget lasts (here none: one segment per
    visit), oldest first; a segment not reached shows its last count, or nothing before its first."""
    from kizuna.console.views import segments as segment_views
    from kizuna.storage.models import Segment

    segment_views._last_counts.clear()  # what other tests' pages counted in this process
    async with transaction(sessions) as session:
        saved = [Segment(name=name, rule=rule, created_at=NOW, updated_at=NOW)
                 for name, rule in (("VIP", c("tag", "eq", "VIP")), ("bought", c("frequency", "gte", 1)),
                                    ("everyone", {"all": []}))]
        session.add_all(saved)
    visits = []
    for _ in range(4):
        async with sessions() as session:
            counts = await segment_views.list_counts(session, saved, NOW, budget_s=0)
            visits.append([counts[segment.id] for segment in saved])
    assert visits == [[1, None, None], [1, 2, None], [1, 2, 3], [1, 2, 3]]
    async with transaction(sessions) as session:  # a new customer: the count shown catches up visit by visit
        session.add(Customer(line_user_id="U" + "4" * 32, followed=True))
    async with sessions() as session:
        counts = await segment_views.list_counts(session, saved, NOW, budget_s=0)
    assert [counts[segment.id] for segment in saved] == [1, 2, 3]  # the oldest (VIP) was recounted: still 1
    async with sessions() as session:
        counts = await segment_views.list_counts(session, saved, NOW, budget_s=60)
    assert [counts[segment.id] for segment in saved] == [1, 2, 4]
