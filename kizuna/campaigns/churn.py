"""The churn model's daily job: BG/NBD + Gamma-Gamma (campaigns/clv_model.py) fitted on the shop's
orders, and each customer's P(alive), expected purchases and model LTV written to
`customer_metrics` (issue 14 §3).

1. **Extract** (`purchase_summaries`): one SQL statement over the completed orders, grouped per
   customer, gives each customer's BG/NBD summary in **days** of the shop's time zone. Purchases
   are counted per calendar day, as in the papers' CDNOW data (several orders on one day are one
   purchase, their totals added), so
   ``x`` = purchase days − 1 (repeat purchases), ``t_x`` = last purchase day − first,
   ``T`` = today − first purchase day, and the Gamma-Gamma spend is the average value of the repeat
   purchase days (the first day's spend left out, FHL 2005b). The rows come back as numpy arrays.
2. **Fit** (`fit`): BG/NBD on at most `FIT_SAMPLE` (50,000) customers drawn at random (a fixed
   seed, so a re-run on the same data gives the same model). Four (three) parameters
   estimated from 50,000 customers have standard errors far below anything a marketer reads off a
   P(alive), and the fit's cost grows with the customers it sees (each of its 100-odd iterations
   evaluates the likelihood ~9 times over every customer, plus a Hessian check): the full 1M would
   take minutes of CPU for the same answer. Gamma-Gamma on the sample's repeat customers.
3. **Score** (`score`): every customer, vectorised numpy. P(alive); expected purchases in the next
   `churn_horizon_days` (metric settings, default 90); model LTV = expected purchases over
   `expected_years` (the same horizon as the formula LTV, default 3 years) × the Gamma-Gamma
   expected order value × `gross_margin`, discounted per 30 days when `annual_discount_rate` > 0
   (default 0: not discounted).
4. **Write**: `customer_metrics.write_churn_scores` in transactions of 10,000 customers (orders
   arriving meanwhile wait on at most one chunk's row locks), and the run's status (when, the
   parameters, or why not) in `metric_settings.churn_model` for the console.

The model is **unavailable** — p_alive, expected purchases and model LTV are NULL everywhere and
the formula LTV is what there is — when fewer than `MIN_REPEAT_CUSTOMERS` (30) customers have a
repeat purchase, or the fit has no interior maximum (`FitError`). One log line says why, and
the console shows it. Only BG/NBD failing makes the model unavailable; a spend model that does
not fit (or has no finite mean, q ≤ 1) leaves model LTV NULL and the rest written.

Who runs it: one worker a day (`refresh_model_if_due`, claimed in `metric_settings` like the
deciles), `kizuna metrics refresh`, and the workers' next look after a CSV import of orders
(which marks it due). A new order does not move the stored values; the next run does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import customer_metrics, faq
from kizuna.storage.customer_metrics import MetricRules
from kizuna.storage.db import chunked, transaction
from kizuna.storage.models import Order, OrderStatus
from kizuna.storage.types import utcnow

from .clv_model import BGNBDModel, FitError, GammaGammaModel, fit_bgnbd, fit_gamma_gamma, model_ltv

log = logging.getLogger("kizuna.churn")

UNIT = "days"
MIN_REPEAT_CUSTOMERS = 30
FIT_SAMPLE = 50_000
SEED = 20050101  # the fit's sample is drawn with a fixed seed: the same data give the same model
WRITE_CHUNK = 10_000
DISCOUNT_PERIOD_DAYS = 30
DAILY = timedelta(days=1)
_UNIX_EPOCH_JULIAN_DAY = 2440587.5  # SQLite's julianday('1970-01-01 00:00:00')


@dataclass
class Summaries:
    """Each customer's purchase summary, one entry per customer with a completed order."""

    customer_id: np.ndarray
    x: np.ndarray  # repeat purchase days
    t_x: np.ndarray  # days from the first purchase day to the last
    T: np.ndarray  # days from the first purchase day to today
    repeat_value: np.ndarray  # average spend of a repeat purchase day (yen), 0 without one

    def __len__(self) -> int:
        return int(self.customer_id.size)


@dataclass
class ModelStatus:
    """A run of the model, as saved in `metric_settings.churn_model` and shown in the console."""

    fitted: bool
    ran_at: str  # ISO 8601, UTC
    reason: str | None = None  # why it is unavailable
    reason_code: str | None = None  # too_few_repeat_customers | no_estimate (for the console's words)
    unit: str = UNIT
    customers: int = 0
    repeat_customers: int = 0
    fit_sample: int = 0
    horizon_days: int = 90
    bgnbd: dict | None = None  # r, alpha (per day), a, b, log_likelihood
    gamma_gamma: dict | None = None  # p, q, gamma (yen), log_likelihood
    spend_reason: str | None = None  # why model LTV is not written
    seconds: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> ModelStatus | None:
        if not data:
            return None
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def ran_at_time(self) -> datetime:
        return datetime.fromisoformat(self.ran_at)


class ModelUnavailable(Exception):
    """The data cannot give a BG/NBD model; the message says why (shown in the console), `code`
    which of the two reasons it is."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# -- 1. extract -------------------------------------------------------------------------------


def _day_number(dialect: str, column, offset_seconds: int):
    """Whole days since 1970-01-01 of `column` in the shop's time zone (a fixed UTC offset)."""
    if dialect == "postgresql":
        return sa.cast(sa.func.floor((sa.extract("epoch", column) + offset_seconds) / 86400), sa.Integer)
    # Truncation is floor for dates after 1970 (all of a shop's orders).
    return sa.cast(sa.func.julianday(column) - _UNIX_EPOCH_JULIAN_DAY + offset_seconds / 86400.0, sa.Integer)


def summaries_statement(dialect: str, offset_seconds: int) -> sa.Select:
    """(customer_id, purchase days, first day, last day, spend of the repeat days) per customer:
    orders → days → customers, grouped twice in one statement, no per-customer subquery."""
    orders = Order.__table__
    dated = (sa.select(orders.c.customer_id, _day_number(dialect, orders.c.ordered_at, offset_seconds).label("day"),
                       orders.c.total)
             .where(orders.c.status == OrderStatus.COMPLETED.value).subquery("dated"))
    days = (sa.select(dated.c.customer_id, dated.c.day, sa.func.sum(dated.c.total).label("spend"),
                      sa.func.min(dated.c.day).over(partition_by=dated.c.customer_id).label("first_day"))
            .group_by(dated.c.customer_id, dated.c.day).subquery("days"))
    return (sa.select(
        days.c.customer_id,
        sa.func.count().label("purchase_days"),
        sa.func.min(days.c.day).label("first_day"),
        sa.func.max(days.c.day).label("last_day"),
        sa.func.sum(sa.case((days.c.day > days.c.first_day, days.c.spend), else_=0)).label("repeat_spend"),
    ).group_by(days.c.customer_id))


def _offset_seconds(now: datetime, zone: str) -> int:
    """The shop time zone's UTC offset now (Japan has no daylight saving time; elsewhere a day
    boundary may be an hour off for half the year, which moves no estimate noticeably)."""
    offset = now.astimezone(ZoneInfo(zone)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


async def purchase_summaries(session: AsyncSession, *, now: datetime, zone: str = "Asia/Tokyo") -> Summaries:
    offset = _offset_seconds(now, zone)
    rows = (await session.execute(summaries_statement(session.bind.dialect.name, offset))).all()
    today = math.floor((now.timestamp() + offset) / 86400)
    if not rows:
        empty = np.zeros(0)
        return Summaries(np.zeros(0, dtype=np.int64), empty, empty, empty, empty)
    ids, purchase_days, first, last, repeat_spend = (np.asarray(column) for column in zip(*rows, strict=True))
    x = purchase_days.astype(np.float64) - 1
    t_x = (last - first).astype(np.float64)
    # An order dated in the future (a clock off at the shop) counts as today.
    T = np.maximum(today - first.astype(np.float64), t_x)
    repeat_value = np.where(x > 0, repeat_spend.astype(np.float64) / np.maximum(x, 1), 0.0)
    return Summaries(ids.astype(np.int64), x, t_x, T, repeat_value)


# -- 2. fit -----------------------------------------------------------------------------------


@dataclass
class Fitted:
    purchases: BGNBDModel
    spend: GammaGammaModel | None
    spend_reason: str | None
    fit_sample: int


def fit(summaries: Summaries, *, sample: int = FIT_SAMPLE, seed: int = SEED) -> Fitted:
    """The models fitted on (a sample of) the customers; ModelUnavailable saying why not."""
    repeaters = int((summaries.x > 0).sum())
    if repeaters < MIN_REPEAT_CUSTOMERS:
        raise ModelUnavailable(
            f"too few repeat customers: {repeaters} of {len(summaries)} bought on more than one day "
            f"(at least {MIN_REPEAT_CUSTOMERS} needed)", "too_few_repeat_customers")
    chosen = np.arange(len(summaries))
    if len(summaries) > sample:
        chosen = np.sort(np.random.default_rng(seed).choice(len(summaries), size=sample, replace=False))
    x, t_x, T, value = (summaries.x[chosen], summaries.t_x[chosen], summaries.T[chosen], summaries.repeat_value[chosen])
    try:
        purchases = fit_bgnbd(x, t_x, T)
    except (FitError, ValueError) as error:
        raise ModelUnavailable(f"the BG/NBD fit found no estimate: {error}", "no_estimate") from None
    spend, spend_reason = None, None
    try:
        spend = fit_gamma_gamma(x, value)
        spend.mean_value  # noqa: B018 - raises when q ≤ 1 (no finite expected order value)
    except (FitError, ValueError) as error:
        spend, spend_reason = None, f"the Gamma-Gamma spend fit found no usable estimate: {error}"
    return Fitted(purchases, spend, spend_reason, int(chosen.size))


# -- 3. score ---------------------------------------------------------------------------------


@dataclass
class Scores:
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    model_ltv: np.ndarray | None  # yen; None without a spend model


def score(fitted: Fitted, summaries: Summaries, rules: MetricRules) -> Scores:
    x, t_x, T = summaries.x, summaries.t_x, summaries.T
    model = fitted.purchases
    p_alive = np.asarray(model.p_alive(x, t_x, T), dtype=np.float64)
    expected = np.asarray(model.expected_purchases(float(rules.churn_horizon_days), x, t_x, T), dtype=np.float64)
    ltv = None
    if fitted.spend is not None:
        rate = rules.annual_discount_rate
        ltv = np.asarray(model_ltv(
            model, fitted.spend, x, t_x, T, summaries.repeat_value, horizon=rules.expected_years * 365.0,
            margin=rules.gross_margin,
            discount_rate=(1 + rate) ** (DISCOUNT_PERIOD_DAYS / 365.0) - 1 if rate > 0 else 0.0,
            period=DISCOUNT_PERIOD_DAYS if rate > 0 else None,
        ), dtype=np.float64)
    return Scores(p_alive, expected, ltv)


def score_rows(summaries: Summaries, scores: Scores) -> list[customer_metrics.ScoreRow]:
    """(customer_id, p_alive, expected_purchases, model_ltv) per customer; a value the
    arithmetic could not give (not finite) is stored as NULL rather than as a wrong number."""
    def clean(values: np.ndarray) -> list[float | None]:
        return np.where(np.isfinite(values), values, np.nan).tolist()

    p_alive, expected = clean(scores.p_alive), clean(scores.expected_purchases)
    if scores.model_ltv is None:
        ltv: list = [None] * len(summaries)
    else:
        ltv = [None if math.isnan(value) else int(round(value)) for value in clean(scores.model_ltv)]
    return [(customer_id, None if math.isnan(p) else p, None if math.isnan(e) else e, l)
            for customer_id, p, e, l in zip(summaries.customer_id.tolist(), p_alive, expected, ltv, strict=True)]


# -- 4. the job -------------------------------------------------------------------------------


async def refresh_model(sessions: async_sessionmaker[AsyncSession], *, now: datetime | None = None,
                        write_method: str | None = None) -> ModelStatus:
    """Fit, score and write (see the module's docstring); the run's status is saved and
    returned. Never raises for data the model cannot use (that is an unavailable status);
    a database error propagates to the caller."""
    now = now or utcnow()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    async with sessions() as session:
        rules = await customer_metrics.load_rules(session)
        zone = await faq.shop_timezone(session)
        summaries = await purchase_summaries(session, now=now, zone=zone)
    seconds["extract"] = round(time.perf_counter() - started, 3)
    status = ModelStatus(fitted=False, ran_at=now.isoformat(), customers=len(summaries),
                         repeat_customers=int((summaries.x > 0).sum()), horizon_days=rules.churn_horizon_days)
    try:
        # CPU work off the event loop: a worker keeps serving events meanwhile.
        step = time.perf_counter()
        fitted = await asyncio.to_thread(fit, summaries)
        seconds["fit"] = round(time.perf_counter() - step, 3)
        step = time.perf_counter()
        rows = await asyncio.to_thread(lambda: score_rows(summaries, score(fitted, summaries, rules)))
        seconds["score"] = round(time.perf_counter() - step, 3)
    except ModelUnavailable as unavailable:
        status.reason, status.reason_code = str(unavailable), unavailable.code
        status.seconds = seconds
        async with transaction(sessions) as session:
            await customer_metrics.clear_churn_scores(session)
            await customer_metrics.save_churn_model(session, status.as_json(), now=now)
        (log.warning if len(summaries) else log.info)(
            "churn model unavailable, p_alive left empty and the formula LTV kept: %s", status.reason)
        return status
    step = time.perf_counter()
    for chunk in chunked(rows, WRITE_CHUNK):
        async with transaction(sessions) as session:
            await customer_metrics.write_churn_scores(session, list(chunk), method=write_method)
    seconds["write"] = round(time.perf_counter() - step, 3)
    purchases, spend = fitted.purchases, fitted.spend
    status.fitted = True
    status.fit_sample = fitted.fit_sample
    status.bgnbd = {"r": purchases.r, "alpha": purchases.alpha, "a": purchases.a, "b": purchases.b,
                    "log_likelihood": purchases.log_likelihood}
    status.gamma_gamma = None if spend is None else {"p": spend.p, "q": spend.q, "gamma": spend.gamma,
                                                     "log_likelihood": spend.log_likelihood}
    status.spend_reason = fitted.spend_reason
    status.seconds = seconds
    async with transaction(sessions) as session:
        await customer_metrics.clear_churn_scores(session, only_without_orders=True)
        await customer_metrics.save_churn_model(session, status.as_json(), now=now)
    log.info("churn model fitted on %d of %d customers (%d repeat): r=%.3f alpha=%.3f a=%.3f b=%.3f; %s",
             fitted.fit_sample, len(summaries), status.repeat_customers, purchases.r, purchases.alpha, purchases.a,
             purchases.b, fitted.spend_reason or "spend model fitted")
    return status


async def refresh_model_if_due(sessions: async_sessionmaker[AsyncSession], *, now: datetime,
                               every: timedelta = DAILY) -> ModelStatus | None:
    """The workers' scheduled run: claimed in the database (one of N workers gets it), then run
    outside the claim's transaction. The run's status when this caller ran it, else None."""
    async with transaction(sessions) as session:
        claimed = await customer_metrics.claim_churn_model(session, now=now, every=every)
    if not claimed:
        return None
    return await refresh_model(sessions, now=now)


async def model_status(session: AsyncSession) -> ModelStatus | None:
    """The last run (None: the model never ran)."""
    return ModelStatus.from_json(await customer_metrics.load_churn_model(session))


async def model_fitted(session: AsyncSession) -> bool:
    status = await model_status(session)
    return status is not None and status.fitted
