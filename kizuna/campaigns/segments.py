"""Segments: a checked rule (campaigns/rules.py) compiled to ONE SQL select of customer ids, and
the services the REST API and the console call (create, list, preview, members, presets).

How a rule becomes SQL, so that it is fast on a million customers and safe from its values:
- `customers` LEFT JOIN `customer_metrics` (kept by the order upsert, storage/customer_metrics.py),
  joined only when a metric field is used; nothing aggregates the orders table per customer.
- Conditions on other tables are uncorrelated semi-joins, `customers.id IN (SELECT customer_id …)`
  (tags, purchases, coupon redemptions): the database runs each sub-select once, never a
  per-customer SubPlan.
- Conditions on elapsed time (`recency_days`, `rfm_r`, `last_interaction_days`, `followed_days`,
  `age`) are ranges on the stored moment, with bounds computed here from `now`: "recency_days ≥ 90"
  is `last_order_at ≤ now − 90 × 24 h`. Exact (floor of whole days, whole years), never stale,
  the same on both backends, and an index can serve them.
- Every value is a bound parameter; field and op names only pick code from an allow-list.
- `ne` is `not eq`, and `not` is "the inner rule is not true" (`NOT COALESCE(rule, false)`), so
  a customer without a value (no orders, no birthday) is matched by them, not lost to SQL NULL.

Member order (previews' samples, a segment's pages): `id` (oldest customer first) or
`churn_risk` (lowest P(alive) of the churn model first, customers without one last, then by id).
A rule that has a `p_alive` condition — the 離脱予備軍 preset — is listed by `churn_risk` unless
asked otherwise, so a segment saved from it needs nothing stored besides its rule. Paging is by
keyset either way, with the last customer's id as the cursor: in churn-risk order the next page
starts after that customer's (p_alive, id), read when the page is asked for.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.storage import audit, customer_metrics, faq
from kizuna.storage.customer_metrics import MetricRules, MetricsView
from kizuna.storage.db import LIKE_ESCAPE, contains
from kizuna.storage.errors import Invalid, NotFound
from kizuna.storage.models import (
    SEGMENT_NAME_MAX, CouponGrant, Customer, CustomerMetrics, CustomerTag, GrantStatus, Order, OrderItem, OrderStatus,
    Segment,
)
from kizuna.storage.models import FriendSource, FriendSourceAttribution

from .rules import All, AnyOf, Condition, Node, Not, Op, check

SAMPLE_SIZE = 10

_customers = Customer.__table__
_metrics = CustomerMetrics.__table__


@dataclass
class _Context:
    now: datetime
    today: date  # in the shop's time zone: ages and birth months
    rules: MetricRules
    uses_metrics: bool = False


def compile_rule(node: Node, *, now: datetime, rules: MetricRules, zone: str = "Asia/Tokyo") -> sa.Select:
    """The select of the ids of the customers `node` matches (a checked rule, `rules.check`)."""
    context = _Context(now=now, today=now.astimezone(ZoneInfo(zone)).date(), rules=rules)
    condition = _compile(node, context)
    source = _customers.outerjoin(_metrics, _metrics.c.customer_id == _customers.c.id) if context.uses_metrics else _customers
    # A customer merged into another (名寄せ) lives on in the one kept: never a member on its own.
    return sa.select(_customers.c.id).select_from(source).where(_customers.c.merged_into_id.is_(None), condition)


def _compile(node: Node, context: _Context) -> Any:
    if isinstance(node, All):
        return sa.and_(sa.true(), *(_compile(item, context) for item in node.rules))
    if isinstance(node, AnyOf):
        return sa.or_(*(_compile(item, context) for item in node.rules))
    if isinstance(node, Not):
        return _not(_compile(node.rule, context))
    if node.op == Op.NE:
        return _not(_condition(Condition(node.field, Op.EQ, node.value, node.within_days), context))
    return _condition(node, context)


def _not(condition: Any) -> Any:
    # Two-valued: where the inner condition is unknown (NULL), the negation is true.
    return sa.not_(sa.func.coalesce(condition, sa.false()))


def _compare(column: Any, op: Op, value: Any) -> Any:
    """A plain comparison of `column` by `op` (ne is handled above, as not eq)."""
    if op == Op.EQ:
        return column == value
    if op == Op.LT:
        return column < value
    if op == Op.LTE:
        return column <= value
    if op == Op.GT:
        return column > value
    if op == Op.GTE:
        return column >= value
    if op == Op.IN:
        return column.in_(value)
    if op == Op.BETWEEN:
        return column.between(value[0], value[1])
    if op == Op.CONTAINS:
        return column.like(contains(value), escape=LIKE_ESCAPE)
    raise AssertionError(op)


def _bounds(op: Op, value: Any) -> list[tuple[int | None, int | None]]:
    """An integer condition as ranges (low, high; None: open) of the integer: OR-ed."""
    if op == Op.EQ:
        return [(value, value)]
    if op == Op.LT:
        return [(None, value - 1)]
    if op == Op.LTE:
        return [(None, value)]
    if op == Op.GT:
        return [(value + 1, None)]
    if op == Op.GTE:
        return [(value, None)]
    if op == Op.IN:
        return [(item, item) for item in sorted(set(value))]
    if op == Op.BETWEEN:
        return [(value[0], value[1])]
    raise AssertionError(op)


def _elapsed(column: Any, ranges: list[tuple[int | None, int | None]], ago: Callable[[int], Any]) -> Any:
    """Whole units elapsed since `column` within `ranges`. `ago(n)` is the latest moment that is
    at least n units ago, so "≥ n" is `column ≤ ago(n)` and "≤ n" is `column > ago(n + 1)`."""
    parts = []
    for low, high in ranges:
        bounds = []
        if low is not None:
            bounds.append(column <= ago(low))
        if high is not None:
            bounds.append(column > ago(high + 1))
        parts.append(sa.and_(column.is_not(None), *bounds))
    return sa.or_(sa.false(), *parts)


def _years_ago(today: date, years: int) -> date:
    """The birthday of someone who turns `years` today (29 February: 1 March in other years)."""
    year = today.year - years
    if today.month == 2 and today.day == 29 and not calendar.isleap(year):
        return date(year, 3, 1) - timedelta(days=1)
    return today.replace(year=year)


def _semi_join(subquery: sa.Select) -> Any:
    return _customers.c.id.in_(subquery)


def _purchases(column: Any, node: Condition, context: _Context) -> Any:
    orders, items = Order.__table__, OrderItem.__table__
    subquery = (sa.select(orders.c.customer_id).select_from(orders.join(items, items.c.order_id == orders.c.id))
                .where(orders.c.status == OrderStatus.COMPLETED.value, _compare(column(items), node.op, node.value)))
    if node.within_days is not None:
        subquery = subquery.where(orders.c.ordered_at >= context.now - timedelta(days=node.within_days))
    return _semi_join(subquery)


def _coupon(node: Condition, context: _Context) -> Any:
    grants = CouponGrant.__table__
    subquery = sa.select(grants.c.customer_id).where(grants.c.status == GrantStatus.REDEEMED.value)
    if node.within_days is not None:
        subquery = subquery.where(grants.c.redeemed_at >= context.now - timedelta(days=node.within_days))
    values = node.value if node.op == Op.IN else [node.value]
    if any(value is True for value in values):
        return _semi_join(subquery)  # any coupon
    ids = [value for value in values if value is not False]
    redeemed = _semi_join(subquery.where(grants.c.coupon_id.in_(ids))) if ids else sa.false()
    if any(value is False for value in values):  # "redeemed none"
        return sa.or_(redeemed, _not(_semi_join(subquery)))
    return redeemed


def _metric(context: _Context, name: str, default: Any = None) -> Any:
    context.uses_metrics = True
    column = _metrics.c[name]
    return column if default is None else sa.func.coalesce(column, default)


def _condition(node: Condition, context: _Context) -> Any:
    field, op, value = node.field, node.op, node.value
    customers = _customers.c
    if field in ("registered", "followed", "blocked", "marketing_opt_in", "gender", "prefecture"):
        return _compare(customers[field], op, value)
    if field in ("frequency", "monetary", "ltv"):
        return _compare(_metric(context, field, 0), op, value)  # no orders: 0
    if field == "f2":
        return _compare(_metric(context, field, sa.false()), op, value)
    if field in ("rfm_f", "rfm_m", "decile", "p_alive", "expected_purchases"):
        return _compare(_metric(context, field), op, value)  # no orders (not scored yet): no match
    if field == "birth_month":
        return _compare(sa.extract("month", customers.birthday), op, value)
    day = timedelta(days=1)
    if field in ("recency_days", "last_interaction_days", "followed_days"):
        column = {"recency_days": lambda: _metric(context, "last_order_at"),
                  "last_interaction_days": lambda: customers.last_interaction_at,
                  "followed_days": lambda: customers.followed_at}[field]()
        return _elapsed(column, _bounds(op, value), lambda n: context.now - n * day)
    if field == "rfm_r":
        # The scores the condition accepts, each a range of recency days (computed, never stored).
        scores = [score for score in range(1, 6) if _accepts(op, value, score)]
        ranges = [customer_metrics.r_score_days(score, context.rules) for score in scores]
        return _elapsed(_metric(context, "last_order_at"), ranges, lambda n: context.now - n * day)
    if field == "age":
        return _elapsed(customers.birthday, _bounds(op, value), lambda n: _years_ago(context.today, n))
    if field == "tag":
        tags = CustomerTag.__table__
        return _semi_join(sa.select(tags.c.customer_id).where(_compare(tags.c.tag, op, value)))
    if field == "purchased_sku":
        return _purchases(lambda items: items.c.sku, node, context)
    if field == "purchased_category":
        return _purchases(lambda items: items.c.category, node, context)
    if field == "coupon_redeemed":
        return _coupon(node, context)
    if field == "friend_source":
        # The source the customer came through (resolved attributions only), by its code or its name.
        sources, attributions = FriendSource.__table__, FriendSourceAttribution.__table__
        return _semi_join(sa.select(attributions.c.customer_id)
                          .select_from(attributions.join(sources, sources.c.id == attributions.c.source_id))
                          .where(attributions.c.resolved_at.is_not(None),
                                 sa.or_(_compare(sources.c.code, op, value), _compare(sources.c.name, op, value))))
    raise AssertionError(field)


def _accepts(op: Op, value: Any, score: int) -> bool:
    return any((low is None or score >= low) and (high is None or score <= high) for low, high in _bounds(op, value))


# -- services ---------------------------------------------------------------------------------


@dataclass
class Member:
    """A customer of a segment, with their metrics as of now."""

    customer: Customer
    metrics: MetricsView


@dataclass
class Preview:
    count: int
    sample: list[Member]


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    description: str
    rule: dict


async def audience(session: AsyncSession, rule: Any, *, now: datetime, where: str = "rule") -> sa.Select:
    """The compiled select of `rule`'s customer ids (Invalid naming the problem)."""
    node = check(rule, where)
    return compile_rule(node, now=now, rules=await customer_metrics.load_rules(session), zone=await faq.shop_timezone(session))


BY_ID, BY_CHURN_RISK = "id", "churn_risk"
ORDERS = (BY_ID, BY_CHURN_RISK)


def _mentions(node: Node, field: str) -> bool:
    if isinstance(node, (All, AnyOf)):
        return any(_mentions(item, field) for item in node.rules)
    if isinstance(node, Not):
        return _mentions(node.rule, field)
    return node.field == field


def default_order(rule: Any) -> str:
    """`churn_risk` for a rule about the churn model (a `p_alive` condition), else `id`."""
    try:
        return BY_CHURN_RISK if _mentions(check(rule), "p_alive") else BY_ID
    except Invalid:
        return BY_ID


def _check_order(order: str | None, rule: Any) -> str:
    if order is None:
        return default_order(rule)
    if order not in ORDERS:
        raise Invalid("order", f"must be {' or '.join(ORDERS)}")
    return order


async def _page(session: AsyncSession, ids: sa.Subquery, *, order: str, limit: int, after: int | None) -> list[int]:
    """Ids of a page of the audience `ids`, in `order`, after the customer `after` (keyset)."""
    if order == BY_ID:
        statement = sa.select(ids.c.id).order_by(ids.c.id).limit(limit)
        if after is not None:
            statement = statement.where(ids.c.id > after)
        return list((await session.execute(statement)).scalars())
    p_alive = _metrics.c.p_alive
    statement = (sa.select(ids.c.id).select_from(ids.outerjoin(_metrics, _metrics.c.customer_id == ids.c.id))
                 # NULLS LAST on both backends: false (has a value) sorts before true
                 .order_by(p_alive.is_(None), p_alive, ids.c.id).limit(limit))
    if after is not None:
        last = (await session.execute(sa.select(p_alive).where(_metrics.c.customer_id == after))).scalar_one_or_none()
        if last is None:
            statement = statement.where(p_alive.is_(None), ids.c.id > after)
        else:
            statement = statement.where(sa.or_(p_alive > last, sa.and_(p_alive == last, ids.c.id > after), p_alive.is_(None)))
    return list((await session.execute(statement)).scalars())


async def preview(session: AsyncSession, rule: Any, *, now: datetime, sample: int = SAMPLE_SIZE,
                  order: str | None = None) -> Preview:
    """How many customers `rule` matches now, and the first few (in `order`; see the module's
    docstring for the default)."""
    ids = (await audience(session, rule, now=now)).subquery("audience")
    order = _check_order(order, rule)
    count = (await session.execute(sa.select(sa.func.count()).select_from(ids))).scalar_one()
    first = await _page(session, ids, order=order, limit=sample, after=None) if sample else []
    return Preview(count=count, sample=await _members(session, first, now=now))


async def members(session: AsyncSession, segment_id: int, *, now: datetime, limit: int, after: int | None,
                  order: str | None = None) -> list[Member]:
    """A page of the segment's customers in `order`, after the customer `after` (keyset)."""
    segment = await get(session, segment_id)
    ids = (await audience(session, segment.rule, now=now)).subquery("audience")
    order = _check_order(order, segment.rule)
    return await _members(session, await _page(session, ids, order=order, limit=limit, after=after), now=now)


async def _members(session: AsyncSession, ids: list[int], *, now: datetime) -> list[Member]:
    if not ids:
        return []
    rows = {row.id: row for row in (await session.execute(sa.select(Customer).where(Customer.id.in_(ids)))).scalars()}
    metrics = await customer_metrics.read(session, ids, now=now)
    return [Member(rows[customer_id], metrics[customer_id]) for customer_id in ids]


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > SEGMENT_NAME_MAX:
        raise Invalid("name", f"must be text of 1 to {SEGMENT_NAME_MAX} characters")
    return name.strip()


async def create(session: AsyncSession, name: Any, rule: Any, *, now: datetime, actor: audit.Actor | None = None) -> Segment:
    """Save a segment; its rule is checked now (Invalid naming the problem) and compiled each
    time it is used, so its members are always current."""
    name = check_name(name)
    check(rule)
    segment = Segment(name=name, rule=rule, created_by=actor.label[:100] if actor else None, created_at=now, updated_at=now)
    session.add(segment)
    await session.flush()
    audit.record_by(session, actor, audit.Action.SEGMENT_CREATED, target=f"segment:{segment.id} {name}")
    return segment


async def get(session: AsyncSession, segment_id: int) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound("no such segment")
    return segment


async def list_page(session: AsyncSession, *, limit: int, after: int | None) -> list[Segment]:
    statement = sa.select(Segment).order_by(Segment.id).limit(limit)
    if after is not None:
        statement = statement.where(Segment.id > after)
    return list((await session.execute(statement)).scalars())


CHURN_P_ALIVE_BELOW = 0.5


def presets(now: datetime, zone: str = "Asia/Tokyo", *, churn_model: bool = False) -> list[Preset]:
    """The CRM playbook's segments, as rules (a starting point a marketer can copy and edit).
    Thresholds follow the default RFM bands (storage/customer_metrics.py).

    離脱予備軍 with the churn model fitted (`churn_model`, campaigns/churn.py `model_fitted`):
    repeat customers whose P(alive) is below 0.5 — the model thinks them more likely gone than
    still buying — listed lowest P(alive) first. Without it, the recency rule (2+ orders, the
    last 61 to 180 days ago)."""
    month = now.astimezone(ZoneInfo(zone)).month
    return [
        Preset("loyal", "優良顧客", "R, F and M scores all 4 or 5: recent, repeat, high spend",
               {"all": [{"field": "rfm_r", "op": "gte", "value": 4}, {"field": "rfm_f", "op": "gte", "value": 4},
                        {"field": "rfm_m", "op": "gte", "value": 4}]}),
        Preset("dormant", "休眠顧客", "bought before, but not for more than 180 days",
               {"all": [{"field": "frequency", "op": "gte", "value": 1}, {"field": "recency_days", "op": "gt", "value": 180}]}),
        Preset("churn_risk", "離脱予備軍",
               "repeat customers (2+ orders) the churn model (BG/NBD) gives less than a 50 % chance of still "
               "buying, most at risk first", _churn_model_rule())
        if churn_model else
        Preset("churn_risk", "離脱予備軍",
               "repeat customers (2+ orders) whose last order was 61 to 180 days ago: slipping, not yet dormant "
               "(the churn model is not fitted yet; with it, ranked by its P(alive))",
               {"all": [{"field": "frequency", "op": "gte", "value": 2},
                        {"field": "recency_days", "op": "between", "value": [61, 180]}]}),
        Preset("new", "新規顧客", "a first order in the last 30 days",
               {"all": [{"field": "frequency", "op": "eq", "value": 1}, {"field": "recency_days", "op": "lte", "value": 30}]}),
        Preset("f2_candidates", "F2転換候補", "one order so far, in the last 90 days: the moment to win the second",
               {"all": [{"field": "frequency", "op": "eq", "value": 1}, {"field": "recency_days", "op": "lte", "value": 90}]}),
        Preset("birthday_month", "誕生月", "birthday in the current month (shop time); the month is filled in when listed",
               {"all": [{"field": "birth_month", "op": "eq", "value": month}]}),
    ]


def _churn_model_rule() -> dict:
    return {"all": [{"field": "frequency", "op": "gte", "value": 2},
                    {"field": "p_alive", "op": "lt", "value": CHURN_P_ALIVE_BELOW}]}
