"""Per-customer purchase metrics (`customer_metrics`), kept current incrementally.

Segments must evaluate fast on a million customers, so they read one kept row per customer
rather than aggregating the orders table on every read. This module keeps those rows right:

- `refresh(session, customer_ids, now=)`: recompute the given customers' rows from their orders,
  set-based — one `INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` per 1,000 ids, the same on
  SQLite and PostgreSQL. `storage.orders.upsert` calls it for the customers a batch touched, in
  the batch's transaction, so an accepted order is in the metrics (and in segment counts) the
  moment it is committed.
- `refresh_population(session)`: what depends on everyone, i.e. the spend decile (NTILE(10) over
  monetary, 1 = the top 10 %). One UPDATE … FROM a window query, writing only the rows whose
  decile changed. Run after each CSV import (`storage/imports.run_import`), hourly by one of the
  workers (`refresh_population_if_due`, claimed in `metric_settings`; KIZUNA_DECILE_REFRESH) and
  by `kizuna metrics refresh`. Between two runs a new buyer's decile is None and the others'
  are as of the last run: deciles move slowly, and recomputing them for every API request would
  cost a pass over all customers each time.
- `rescore_if_requested(sessions, now=)`: after the shop changes its settings (`set_rules`), a
  worker rewrites the F and M scores and LTV from the kept columns, in chunks of customers each
  committed on its own (seconds at a million; the orders are not read again).
- `refresh_all(session, now=)`: every row from the orders, then the deciles (the backfill, and
  `kizuna metrics refresh`).

What is never stored, because it would go stale with the clock: `recency_days` (whole days
since the last completed order, floor((now − last_order_at) / 24 h)) and `rfm_r` (its score).
Both are computed when read: `recency_days()` / `r_score()` in Python, and segment conditions
become ranges on the indexed `last_order_at` (`recency_range`, `r_score_days`).

Defaults (`MetricRules`, for a typical Japanese retail shop: cosmetics, apparel, food by mail),
each overridable in `metric_settings` (one row, like `inquiry_settings`):

| score | R: days since last order | F: completed orders | M: total spend (yen, tax incl.) |
| ----- | ------------------------ | ------------------- | ------------------------------- |
| 5     | ≤ 30                     | ≥ 10                | ≥ 100,000                       |
| 4     | 31-60                    | 5-9                 | 50,000-99,999                   |
| 3     | 61-90                    | 3-4                 | 30,000-49,999                   |
| 2     | 91-180                   | 2                   | 10,000-29,999                   |
| 1     | > 180                    | 1                   | < 10,000                        |

A customer without a completed order has no scores (None) and no decile.

LTV = average order value × gross margin × purchases per year × expected years, with purchases
per year = frequency / the years between first and last order (at least one year, so a new
customer's one order counts as one a year). AOV × purchases per year = monetary / those years,
which is how it is computed (no rounding of AOV on the way). Defaults: gross margin 0.3,
expected years 3.

The churn model (campaigns/churn.py, BG/NBD + Gamma-Gamma) writes `p_alive`,
`expected_purchases` (in the next `churn_horizon_days`, default 90) and `model_ltv` (over the
same `expected_years` as the formula LTV, discounted by `annual_discount_rate`, default 0) once a
day; this module keeps its schedule (`claim_churn_model`, `mark_churn_model_due`), its last run
(`save_churn_model`, `load_churn_model`) and its bulk writes (`write_churn_scores`). Between two
runs the values are as of the last one, like the deciles: a new order does not move them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .db import chunked, insert_on_conflict, transaction
from .errors import Invalid
from .models import CustomerMetrics, MetricSettings, Order, OrderStatus
from .types import UTCDateTime, utcnow

_CHUNK = 1000
DAY = timedelta(days=1)


@dataclass(frozen=True)
class MetricRules:
    """The thresholds and LTV parameters (see the module's table). Each threshold tuple is four
    ascending numbers: R's are upper bounds in days (score 5 up to the first), F's and M's lower
    bounds (score 2 from the first, 5 from the last)."""

    recency_days: tuple[int, ...] = (30, 60, 90, 180)
    frequency_orders: tuple[int, ...] = (2, 3, 5, 10)
    monetary_yen: tuple[int, ...] = (10_000, 30_000, 50_000, 100_000)
    gross_margin: float = 0.3
    expected_years: float = 3.0
    churn_horizon_days: int = 90  # the churn model's "expected purchases in the next N days"
    annual_discount_rate: float = 0.0  # the model LTV's discounting (0: none), applied per 30 days

    def as_json(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


DEFAULT_RULES = MetricRules()
_THRESHOLDS = ("recency_days", "frequency_orders", "monetary_yen")


def check_rules(overrides: dict) -> MetricRules:
    """The defaults with `overrides` applied; Invalid naming the field that is wrong."""
    if not isinstance(overrides, dict):
        raise Invalid("settings", "must be an object")
    values = asdict(DEFAULT_RULES)
    for key, value in overrides.items():
        if key not in values:
            raise Invalid(key, f"is not a metric setting; known: {', '.join(values)}")
        if key in _THRESHOLDS:
            if (not isinstance(value, list) or len(value) != 4
                    or not all(isinstance(item, int) and not isinstance(item, bool) and 0 < item <= 10**12 for item in value)
                    or any(a >= b for a, b in zip(value, value[1:]))):
                raise Invalid(key, "must be four ascending positive whole numbers")
            values[key] = tuple(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise Invalid(key, "must be a number")
            if key == "gross_margin" and not 0 < value <= 1:
                raise Invalid(key, "must be more than 0 and at most 1")
            if key == "expected_years" and not 0 < value <= 50:
                raise Invalid(key, "must be more than 0 and at most 50")
            if key == "churn_horizon_days":
                if not isinstance(value, int) or not 1 <= value <= 3650:
                    raise Invalid(key, "must be a whole number of days from 1 to 3650")
                values[key] = value
                continue
            if key == "annual_discount_rate" and not 0 <= value < 1:
                raise Invalid(key, "must be at least 0 and less than 1 (0.08 for 8 % a year)")
            values[key] = float(value)
    return MetricRules(**values)


async def load_rules(session: AsyncSession) -> MetricRules:
    """The shop's metric rules: the defaults with its overrides (one primary-key read)."""
    return (await load_settings(session))[0]


async def load_settings(session: AsyncSession) -> tuple[MetricRules, dict]:
    """The rules in force and the shop's overrides they came from."""
    row = await session.get(MetricSettings, 1)
    overrides = row.overrides if row is not None else {}
    return check_rules(overrides), overrides


async def set_rules(session: AsyncSession, overrides: dict, *, now: datetime, actor: audit.Actor | None = None) -> MetricRules:
    """Replace the shop's overrides. The kept F and M scores and LTV follow within seconds: the
    change asks the workers for a rescore (`rescore_if_requested`), which rewrites them in
    chunks, each its own short transaction. Doing it here would hold every metrics row (and
    the order imports waiting on them) for as long as a million customers take. The churn
    model, whose horizon and LTV follow the settings too, is made due."""
    checked = check_rules(overrides)
    table = MetricSettings.__table__
    # Insert-or-update in one statement: two admins saving at once cannot both insert row 1.
    changes = {"overrides": overrides, "updated_at": now, "rescore_requested_at": now, "churn_model_claimed_at": None}
    insert = insert_on_conflict(session, table).values(id=1, **changes)
    await session.execute(insert.on_conflict_do_update(index_elements=["id"], set_=changes))
    audit.record_by(session, actor, audit.Action.SETTINGS_CHANGED, target="metric_settings", **checked.as_json())
    return checked


async def rescoring(session: AsyncSession) -> bool:
    """Whether a rescore asked for by a settings change has not finished yet."""
    table = MetricSettings.__table__
    requested = (await session.execute(sa.select(table.c.rescore_requested_at).where(table.c.id == 1))).scalar_one_or_none()
    return requested is not None


# -- kept rows --------------------------------------------------------------------------------


def _score_up(value, bounds: Iterable[int]):
    """1 + the number of lower bounds `value` reaches: 1..5 for four bounds."""
    bounds = list(bounds)
    whens = [(value >= bound, 5 - index) for index, bound in enumerate(reversed(bounds))]
    return sa.case(*whens, else_=1)


def _days_between(dialect: str, first, last):
    if dialect == "postgresql":
        return sa.extract("epoch", last - first) / 86400.0
    return sa.func.julianday(last) - sa.func.julianday(first)


def refresh_statement(dialect: str, rules: MetricRules, now: datetime, customer_ids: list[int] | None) -> sa.Insert:
    """INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE for `customer_ids` (None: everyone with
    an order). `decile` and `p_alive` are left as they are: they are not the orders' to set."""
    orders = Order.__table__
    completed = orders.c.status == OrderStatus.COMPLETED.value
    aggregate = sa.select(
        orders.c.customer_id,
        sa.func.min(sa.case((completed, orders.c.ordered_at))).label("first_order_at"),
        sa.func.max(sa.case((completed, orders.c.ordered_at))).label("last_order_at"),
        sa.func.sum(sa.case((completed, 1), else_=0)).label("frequency"),
        sa.func.sum(sa.case((completed, orders.c.total), else_=0)).label("monetary"),
    )
    if customer_ids is not None:
        aggregate = aggregate.where(orders.c.customer_id.in_(customer_ids))
    agg = aggregate.group_by(orders.c.customer_id).subquery("agg")
    bought = agg.c.frequency > 0
    ltv = _ltv(dialect, rules, agg.c.monetary, agg.c.first_order_at, agg.c.last_order_at)
    select = sa.select(
        agg.c.customer_id, agg.c.first_order_at, agg.c.last_order_at, agg.c.frequency, agg.c.monetary,
        sa.case((bought, agg.c.monetary // agg.c.frequency), else_=0),
        agg.c.frequency >= 2,
        sa.case((bought, _score_up(agg.c.frequency, rules.frequency_orders)), else_=None),
        sa.case((bought, _score_up(agg.c.monetary, rules.monetary_yen)), else_=None),
        sa.case((bought, ltv), else_=0),
        sa.literal(now, UTCDateTime),
    ).where(sa.true())  # SQLite: an INSERT … SELECT with ON CONFLICT needs a WHERE to parse
    table = CustomerMetrics.__table__
    columns = ["customer_id", "first_order_at", "last_order_at", "frequency", "monetary", "average_order_value",
               "f2", "rfm_f", "rfm_m", "ltv", "updated_at"]
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    insert = insert.from_select(columns, select)
    return insert.on_conflict_do_update(index_elements=["customer_id"], set_={name: insert.excluded[name] for name in columns[1:]})


async def refresh(session: AsyncSession, customer_ids: Iterable[int], *, now: datetime, rules: MetricRules | None = None) -> None:
    """Recompute the rows of `customer_ids` from their orders, in the caller's transaction. A
    customer left with no order at all (their orders moved to another customer) loses the row."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    rules = rules or await load_rules(session)
    dialect = session.bind.dialect.name
    table, orders = CustomerMetrics.__table__, Order.__table__
    for chunk in chunked(ids, _CHUNK):
        await session.execute(refresh_statement(dialect, rules, now, list(chunk)))
        await session.execute(sa.delete(table).where(
            table.c.customer_id.in_(chunk),
            table.c.customer_id.not_in(sa.select(orders.c.customer_id).where(orders.c.customer_id.in_(chunk))),
        ))


def decile_statements() -> list[sa.Update]:
    """Spend deciles over everyone with a completed order (NTILE(10) by monetary, highest
    first; ties broken by customer id so a run is repeatable), writing only changed rows."""
    table = CustomerMetrics.__table__
    ranked = sa.select(
        table.c.customer_id,
        sa.func.ntile(10).over(order_by=(table.c.monetary.desc(), table.c.customer_id)).label("decile"),
    ).where(table.c.frequency > 0).subquery("ranked")
    return [
        sa.update(table).values(decile=ranked.c.decile)
        .where(table.c.customer_id == ranked.c.customer_id, table.c.decile.is_distinct_from(ranked.c.decile)),
        sa.update(table).values(decile=None).where(table.c.frequency == 0, table.c.decile.is_not(None)),
    ]


async def refresh_population(session: AsyncSession) -> None:
    """What depends on everyone: the spend deciles (see the module's docstring for when)."""
    for statement in decile_statements():
        await session.execute(statement)


RESCORE_CHUNK = 50_000  # customer ids per transaction: well under a second each at a million
RESCORE_LEASE = timedelta(minutes=15)  # a worker that died mid-rescore: another takes it over after this


def _ltv(dialect: str, rules: MetricRules, monetary, first_order_at, last_order_at):
    """The formula LTV (module docstring): spend per year of buying × margin × expected years."""
    span = _days_between(dialect, first_order_at, last_order_at)
    years_of_buying = sa.case((span > 365, span), else_=365.0)
    return sa.cast(sa.func.round(monetary * (rules.gross_margin * rules.expected_years * 365.0) / years_of_buying), sa.BigInteger)


def rescore_statement(dialect: str, rules: MetricRules, after: int, upto: int) -> sa.Update:
    """The scores and LTV that depend on the settings, rewritten from the kept columns (no pass
    over the orders) for the buyers whose id is in (after, upto], writing only changed rows."""
    table = CustomerMetrics.__table__
    values = {
        "rfm_f": _score_up(table.c.frequency, rules.frequency_orders),
        "rfm_m": _score_up(table.c.monetary, rules.monetary_yen),
        "ltv": _ltv(dialect, rules, table.c.monetary, table.c.first_order_at, table.c.last_order_at),
    }
    changed = sa.or_(*(table.c[name].is_distinct_from(value) for name, value in values.items()))
    return (sa.update(table).values(values)
            .where(table.c.customer_id > after, table.c.customer_id <= upto, table.c.frequency > 0, changed))


async def rescore_if_requested(sessions, *, now: datetime) -> bool:
    """A worker's turn at the rescore a settings change asked for: claim it (of N workers one gets
    it; one that died holding it is taken over after RESCORE_LEASE), rewrite the scores in
    chunks of RESCORE_CHUNK customers, each committed on its own, then mark it done unless the
    settings changed again meanwhile (then it runs again with the newer ones). True when this
    caller ran it."""
    table = MetricSettings.__table__
    async with transaction(sessions) as session:
        requested = (await session.execute(
            sa.update(table).values(rescore_claimed_at=now)
            .where(table.c.id == 1, table.c.rescore_requested_at.is_not(None),
                   sa.or_(table.c.rescore_claimed_at.is_(None), table.c.rescore_claimed_at <= now - RESCORE_LEASE))
            .returning(table.c.rescore_requested_at)
        )).scalar_one_or_none()
        if requested is None:
            return False
        rules = await load_rules(session)
        last = (await session.execute(sa.select(sa.func.max(CustomerMetrics.customer_id)))).scalar_one() or 0
    for after in range(0, last, RESCORE_CHUNK):
        async with transaction(sessions) as session:
            await session.execute(rescore_statement(session.bind.dialect.name, rules, after, after + RESCORE_CHUNK))
    async with transaction(sessions) as session:
        still_asked = sa.case((table.c.rescore_requested_at == requested, None), else_=table.c.rescore_requested_at)
        await session.execute(sa.update(table).values(rescore_requested_at=still_asked, rescore_claimed_at=None)
                              .where(table.c.id == 1))
    return True


async def refresh_population_if_due(session: AsyncSession, *, now: datetime, every: timedelta) -> bool:
    """The workers' scheduled decile refresh: claim it (a conditional UPDATE of the settings row:
    of N workers asking at once, one gets the row) and run it when the last one is `every` ago.
    True when this caller ran it."""
    table = MetricSettings.__table__
    await session.execute(
        insert_on_conflict(session, table).values(id=1, overrides={}, updated_at=now).on_conflict_do_nothing(index_elements=["id"])
    )
    claimed = await session.execute(
        sa.update(table).values(deciles_refreshed_at=now)
        .where(table.c.id == 1, sa.or_(table.c.deciles_refreshed_at.is_(None), table.c.deciles_refreshed_at <= now - every))
    )
    if claimed.rowcount != 1:
        return False
    await refresh_population(session)
    return True


# -- the churn model's schedule, last run and writes (the model itself: campaigns/churn.py) ------


async def _settings_row(session: AsyncSession, now: datetime) -> None:
    table = MetricSettings.__table__
    await session.execute(
        insert_on_conflict(session, table).values(id=1, overrides={}, updated_at=now).on_conflict_do_nothing(index_elements=["id"])
    )


async def claim_churn_model(session: AsyncSession, *, now: datetime, every: timedelta) -> bool:
    """Claim the churn model's scheduled run: a conditional UPDATE of the settings row, as for the
    deciles but with its own time, so of N workers asking at once one gets it. True when this
    caller got it; it must commit before running the fit (the fit takes seconds to minutes and
    must not hold the settings row's lock meanwhile). A run that dies after its claim is retried
    `every` later."""
    table = MetricSettings.__table__
    await _settings_row(session, now)
    claimed = await session.execute(
        sa.update(table).values(churn_model_claimed_at=now)
        .where(table.c.id == 1, sa.or_(table.c.churn_model_claimed_at.is_(None), table.c.churn_model_claimed_at <= now - every))
    )
    return claimed.rowcount == 1


async def mark_churn_model_due(session: AsyncSession, *, now: datetime) -> None:
    """Make the churn model due at the workers' next look (after a CSV import of orders: the fit
    is too slow to run inside the import on a large shop)."""
    table = MetricSettings.__table__
    await _settings_row(session, now)
    await session.execute(sa.update(table).values(churn_model_claimed_at=None).where(table.c.id == 1))


async def save_churn_model(session: AsyncSession, status: dict, *, now: datetime) -> None:
    table = MetricSettings.__table__
    await _settings_row(session, now)
    await session.execute(sa.update(table).values(churn_model=status).where(table.c.id == 1))


async def load_churn_model(session: AsyncSession) -> dict | None:
    """The churn model's last run as saved (None: it never ran)."""
    table = MetricSettings.__table__
    return (await session.execute(sa.select(table.c.churn_model).where(table.c.id == 1))).scalar_one_or_none()


ScoreRow = tuple[int, float, float, "int | None"]  # customer_id, p_alive, expected_purchases, model_ltv
# PostgreSQL only: four arrays bound as four parameters, however many rows.
_UNNEST_UPDATE = sa.text(
    "UPDATE customer_metrics AS m SET p_alive = v.p, expected_purchases = v.e, model_ltv = v.l "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:p AS double precision[]), CAST(:e AS double precision[]), "
    "CAST(:l AS bigint[])) AS v(id, p, e, l) WHERE m.customer_id = v.id"
)
_VALUES_CHUNK = 5_000  # 4 parameters a row: 20,000 per statement, under PostgreSQL's 32,767


async def write_churn_scores(session: AsyncSession, rows: list[ScoreRow], *, method: str | None = None) -> None:
    """Set p_alive, expected_purchases and model_ltv of each row's customer, set-based.

    `method`: "unnest" (PostgreSQL) — one UPDATE … FROM unnest(ids, p, e, l) with the four
    columns bound as four arrays; "values" (PostgreSQL) — one UPDATE … FROM (VALUES …) per 5,000 rows;
    "executemany" — a one-row UPDATE sent for all rows at once (the driver's executemany).
    Default: "unnest" on PostgreSQL, the fastest of the three in bench/churn_model.py at 100k
    customers (docs/benchmarks.md: VALUES pays for parsing and planning 20,000-parameter
    statements, executemany for a bind per row); "executemany" on SQLite (in-process: no round
    trips to save)."""
    if not rows:
        return
    metrics = CustomerMetrics.__table__
    postgres = session.bind.dialect.name == "postgresql"
    method = method or ("unnest" if postgres else "executemany")
    if method not in ("unnest", "values", "executemany") or (method != "executemany" and not postgres):
        raise ValueError(f"write method {method!r}: executemany, or unnest / values on PostgreSQL")
    if method == "unnest":
        ids, p_alive, expected, ltv = (list(column) for column in zip(*rows, strict=True))
        await session.execute(_UNNEST_UPDATE, {"ids": ids, "p": p_alive, "e": expected, "l": ltv})
        return
    if method == "executemany":
        await session.execute(
            sa.update(metrics).where(metrics.c.customer_id == sa.bindparam("id"))
            .values(p_alive=sa.bindparam("p"), expected_purchases=sa.bindparam("e"), model_ltv=sa.bindparam("l")),
            [{"id": row[0], "p": row[1], "e": row[2], "l": row[3]} for row in rows],
        )
        return
    for chunk in chunked(rows, _VALUES_CHUNK):
        values = sa.values(
            sa.column("id", sa.Integer), sa.column("p", sa.Float), sa.column("e", sa.Float), sa.column("l", sa.BigInteger),
            name="scores",
        ).data([tuple(row) for row in chunk])
        await session.execute(sa.update(metrics).where(metrics.c.customer_id == values.c.id)
                              # casts: a VALUES column of NULLs only is text to PostgreSQL
                              .values(p_alive=sa.cast(values.c.p, sa.Float), expected_purchases=sa.cast(values.c.e, sa.Float),
                                      model_ltv=sa.cast(values.c.l, sa.BigInteger)))


async def clear_churn_scores(session: AsyncSession, *, only_without_orders: bool = False) -> None:
    """No model values: on every row (the model is unavailable), or only on those of customers
    without a completed order (`only_without_orders`: the model scores everyone else)."""
    metrics = CustomerMetrics.__table__
    statement = sa.update(metrics).values(p_alive=None, expected_purchases=None, model_ltv=None).where(
        sa.or_(metrics.c.p_alive.is_not(None), metrics.c.expected_purchases.is_not(None), metrics.c.model_ltv.is_not(None)))
    if only_without_orders:
        statement = statement.where(metrics.c.frequency == 0)
    await session.execute(statement)


async def refresh_all(session: AsyncSession, *, now: datetime | None = None, rules: MetricRules | None = None) -> None:
    """Every customer's row from the orders, then the deciles."""
    now = now or utcnow()
    rules = rules or await load_rules(session)
    table, orders = CustomerMetrics.__table__, Order.__table__
    await session.execute(refresh_statement(session.bind.dialect.name, rules, now, None))
    # NOT EXISTS, not NOT IN: PostgreSQL plans it as a hash anti-join; a NOT IN over millions of
    # orders that does not fit work_mem becomes a scan per row.
    await session.execute(sa.delete(table).where(
        ~sa.exists().where(orders.c.customer_id == table.c.customer_id)
    ))
    await refresh_population(session)


# -- read time: what follows from the clock ----------------------------------------------------


def recency_days(last_order_at: datetime | None, now: datetime) -> int | None:
    """Whole days since the last completed order: floor((now − last) / 24 h)."""
    return None if last_order_at is None else math.floor((now - last_order_at) / DAY)


def r_score(days: int | None, rules: MetricRules) -> int | None:
    if days is None:
        return None
    return next((5 - index for index, bound in enumerate(rules.recency_days) if days <= bound), 1)


def r_score_days(score: int, rules: MetricRules) -> tuple[int | None, int | None]:
    """The recency days (lowest, highest; None: no bound) that give R `score`. Score 5 has no
    lower bound, so an order dated a little in the future still counts as recent."""
    bounds = rules.recency_days
    if score == 5:
        return None, bounds[0]
    if score == 1:
        return bounds[-1] + 1, None
    index = 5 - score
    return bounds[index - 1] + 1, bounds[index]


def since(now: datetime, days: int) -> datetime:
    """The moment `days` whole days before `now`: `x ≤ since(now, n)` ⇔ floor((now − x)/24 h) ≥ n."""
    return now - days * DAY


@dataclass
class MetricsView:
    """A customer's metrics as read at `now` (recency and R computed, not stored)."""

    frequency: int = 0
    monetary: int = 0
    average_order_value: int = 0
    f2: bool = False
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    recency_days: int | None = None
    rfm_r: int | None = None
    rfm_f: int | None = None
    rfm_m: int | None = None
    decile: int | None = None
    ltv: int = 0
    p_alive: float | None = None
    expected_purchases: float | None = None
    model_ltv: int | None = None


async def read(session: AsyncSession, customer_ids: list[int], *, now: datetime) -> dict[int, MetricsView]:
    """The metrics of `customer_ids` (a customer without orders gets zeros)."""
    found = {customer_id: MetricsView() for customer_id in customer_ids}
    if not customer_ids:
        return found
    shop_rules = await load_rules(session)
    for chunk in chunked(sorted(set(customer_ids)), _CHUNK):
        rows = (await session.execute(sa.select(CustomerMetrics).where(CustomerMetrics.customer_id.in_(chunk)))).scalars()
        for row in rows:
            days = recency_days(row.last_order_at, now)
            found[row.customer_id] = MetricsView(
                frequency=row.frequency, monetary=row.monetary, average_order_value=row.average_order_value, f2=row.f2,
                first_order_at=row.first_order_at, last_order_at=row.last_order_at, recency_days=days,
                rfm_r=r_score(days, shop_rules), rfm_f=row.rfm_f, rfm_m=row.rfm_m, decile=row.decile, ltv=row.ltv,
                p_alive=row.p_alive, expected_purchases=row.expected_purchases, model_ltv=row.model_ltv,
            )
    return found
