"""PostgreSQL's plan of every compiled condition has no SubPlan (issue 14: "no correlated
per-customer subquery"): each field × op, `not` around each, and conditions where a sub-select
cannot be a semi- or anti-join (under `any`, under `not` of a group). A SubPlan node is a
sub-select PostgreSQL evaluates per customer row (or probes per row as a hashed SubPlan), which
is what `NOT (customers.id IN (SELECT …))` used to become.

Runs on PostgreSQL only: SQLite has no EXPLAIN that names SubPlans (and no anti-join to choose)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from kizuna.campaigns import rules as rule_language
from kizuna.campaigns import segments

from tests.campaigns.test_segments import CASES, NOW, c, people, sessions  # noqa: F401  (fixtures)



@pytest.fixture(autouse=True)
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("EXPLAIN's SubPlan nodes are PostgreSQL's (set KIZUNA_TEST_DATABASE_URL)")


# One value per (field, op) from the semantics cases, so every pair the language has is planned.
SAMPLES = {(rule["field"], rule["op"]): rule for rule, _ in CASES if "field" in rule}
CONDITIONS = list(SAMPLES.values())
NESTED = [
    {"any": [c("tag", "eq", "VIP"), c("gender", "eq", "female")]},
    {"any": [c("purchased_category", "ne", "ヘアケア", within_days=90), c("coupon_redeemed", "eq", False)]},
    {"not": {"all": [c("tag", "eq", "VIP"), c("purchased_sku", "in", ["A", "B"])]}},
    {"not": {"any": [c("coupon_redeemed", "in", [False, 1]), c("decile", "lte", 2)]}},
    {"all": [c("purchased_category", "eq", "ヘアケア", within_days=90), c("rfm_r", "gte", 4), c("registered", "eq", True)]},
]


def sub_plans(plan: dict) -> list[str]:
    """The SubPlan nodes of a JSON plan (their names and what they scan)."""
    found = []
    if plan.get("Parent Relationship") == "SubPlan" or "Subplan Name" in plan:
        found.append(f"{plan.get('Subplan Name', '?')}: {plan.get('Node Type')} {plan.get('Relation Name', '')}")
    for child in plan.get("Plans", []):
        found += sub_plans(child)
    return found


async def explain(session, rule) -> dict:
    statement = await segments.audience(session, rule, now=NOW)
    compiled = statement.compile(dialect=session.bind.dialect, compile_kwargs={"render_postcompile": True})
    # EXPLAIN of the statement as the application sends it: the values bound ($1, $2 …), not inlined.
    values = tuple(compiled.params[name] for name in compiled.positiontup)
    connection = await session.connection()
    raw = (await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", values)).scalar_one()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


def test_every_field_and_op_is_sampled():
    assert {field for field, _ in SAMPLES} == set(rule_language.FIELDS)
    assert {op for _, op in SAMPLES} == set(rule_language.Op)


async def test_no_compiled_condition_has_a_sub_plan(sessions, people):
    rules = CONDITIONS + [{"not": rule} for rule in CONDITIONS] + NESTED
    found = {}
    async with sessions() as session:
        for rule in rules:
            nodes = sub_plans(await explain(session, rule))
            if nodes:
                found[json.dumps(rule, ensure_ascii=False)] = nodes
    assert found == {}


async def test_the_check_sees_a_sub_plan(sessions, people):
    """The detector itself: the old compilation, NOT (id IN (SELECT …)), is a hashed SubPlan."""
    async with sessions() as session:
        raw = (await session.execute(sa.text(
            "EXPLAIN (FORMAT JSON) SELECT id FROM customers WHERE NOT (id IN (SELECT customer_id FROM customer_tags "
            "WHERE tag = :tag))").bindparams(tag="VIP"))).scalar_one()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    assert sub_plans(plan) != []
