"""Automation rules (IF → THEN): the rules, the causes they react to, their firings and webhook calls.

Where the guarantees live:
- A cause is recorded by `record`, called where the fact is written (storage/tags.py,
  storage/orders.py, campaign_batches.record_click, the events API, registration, friend-add
  sources), in that fact's transaction: a crash loses both or neither. When no enabled rule
  listens for that kind, nothing is written (one indexed lookup: the usual case costs nothing).
- `lock_pending` hands causes to one evaluator (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs
  one writing transaction at a time). Whatever the locks do, `claim_firing` inserts the firing
  row unique on (rule, cause) BEFORE the actions, in the transaction that does them: a second
  evaluator, or the same one after a crash and a retry, finds the row and does nothing.
- The depth of a cause is how many rules lie between it and a person's (or system's) act: the
  evaluator sets `session.info[DEPTH]` while a rule's actions run, so the causes those actions
  record (a tag a rule added) are one deeper. Causes deeper than MAX_DEPTH are not evaluated:
  that is what stops a rule adding a tag that another rule removes, forever.
- Daily causes (birthday month, coupon expiring) carry a `dedupe_key` unique in the database:
  once per customer and year, once per grant, however many workers look.

This module imports nothing of ours beyond storage (DESIGN.md), so the hooks can call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import insert_on_conflict, is_postgres
from .errors import NotFound
from .models import (
    AutomationCause,
    AutomationFiring,
    AutomationRule,
    AutomationSegmentMember,
    AutomationSettings,
    AutomationTrigger,
    AutomationWebhookCall,
    CauseStatus,
    CouponGrant,
    Customer,
    GrantStatus,
    WebhookCallStatus,
)

DEPTH = "kizuna.automation_depth"  # session.info key: the depth of the cause whose actions are running
# A rule's action may cause another rule to fire, and so on: at most this many rules in a chain
# (a person's act, then up to MAX_DEPTH rules). Causes recorded deeper are kept (status too_deep)
# for the log, and never evaluated.
MAX_DEPTH = 3


# -- the rules ---------------------------------------------------------------------------------


async def get(session: AsyncSession, rule_id: int) -> AutomationRule:
    rule = await session.get(AutomationRule, rule_id)
    if rule is None:
        raise NotFound("no such automation rule")
    return rule


async def list_all(session: AsyncSession) -> list[AutomationRule]:
    return list((await session.execute(sa.select(AutomationRule).order_by(AutomationRule.id))).scalars())


async def add(session: AsyncSession, rule: AutomationRule) -> AutomationRule:
    session.add(rule)
    await session.flush()
    return rule


async def delete(session: AsyncSession, rule_id: int) -> None:
    """The rule and its history (firings, webhook calls): a deleted rule leaves nothing behind."""
    await get(session, rule_id)
    await session.execute(sa.delete(AutomationSegmentMember).where(AutomationSegmentMember.rule_id == rule_id))
    await session.execute(sa.delete(AutomationWebhookCall).where(AutomationWebhookCall.rule_id == rule_id))
    await session.execute(sa.delete(AutomationFiring).where(AutomationFiring.rule_id == rule_id))
    await session.execute(sa.delete(AutomationRule).where(AutomationRule.id == rule_id))


async def enabled_rules(session: AsyncSession, kind: str) -> list[AutomationRule]:
    statement = (sa.select(AutomationRule).where(AutomationRule.trigger == kind, AutomationRule.enabled.is_(True))
                 .order_by(AutomationRule.id))
    return list((await session.execute(statement)).scalars())


async def _anyone_listens(session: AsyncSession, kind: str) -> bool:
    statement = sa.select(AutomationRule.id).where(AutomationRule.trigger == kind, AutomationRule.enabled.is_(True)).limit(1)
    return (await session.execute(statement)).first() is not None


# -- causes ------------------------------------------------------------------------------------


async def record(
    session: AsyncSession, kind: AutomationTrigger, customer_ids: Iterable[int] | sa.Select, *, now: datetime,
    value: str | None = None, ref_id: int | None = None, data: dict | None = None,
) -> int:
    """Record that `kind` happened to the customers (a list, or a select of ids: set-based either
    way, one statement), in the caller's transaction; the causes written. Nothing is written when
    no enabled rule listens for `kind`."""
    if not await _anyone_listens(session, kind):
        return 0
    depth = int(session.info.get(DEPTH, -1)) + 1
    status = CauseStatus.PENDING if depth <= MAX_DEPTH else CauseStatus.TOO_DEEP
    table = AutomationCause.__table__
    if isinstance(customer_ids, sa.Select):
        ids = customer_ids.subquery("ids")
        rows = sa.select(
            sa.literal(kind.value, table.c.kind.type), ids.c[0], sa.literal(value, table.c.value.type),
            sa.literal(ref_id, table.c.ref_id.type), sa.literal(data or {}, table.c.data.type), sa.literal(depth, table.c.depth.type),
            sa.literal(status.value, table.c.status.type), sa.literal(now, table.c.created_at.type),
        )
        statement = sa.insert(table).from_select(
            ["kind", "customer_id", "value", "ref_id", "data", "depth", "status", "created_at"], rows)
        return (await session.execute(statement)).rowcount or 0
    people = list(customer_ids)
    if not people:
        return 0
    await session.execute(sa.insert(table), [
        {"kind": kind.value, "customer_id": customer_id, "value": value, "ref_id": ref_id, "data": data or {}, "depth": depth,
         "status": status.value, "created_at": now}
        for customer_id in people
    ])
    return len(people)


@dataclass(frozen=True)
class Happened:
    """One cause of `record_each`: its own customer, value, reference and data."""

    customer_id: int
    value: str | None = None
    ref_id: int | None = None
    data: dict | None = None


async def record_each(session: AsyncSession, kind: AutomationTrigger, happenings: list[Happened], *, now: datetime) -> int:
    """`record` for causes that differ (each order its own total): one multi-row INSERT."""
    if not happenings or not await _anyone_listens(session, kind):
        return 0
    depth = int(session.info.get(DEPTH, -1)) + 1
    status = CauseStatus.PENDING if depth <= MAX_DEPTH else CauseStatus.TOO_DEEP
    await session.execute(sa.insert(AutomationCause.__table__), [
        {"kind": kind.value, "customer_id": item.customer_id, "value": item.value, "ref_id": item.ref_id, "data": item.data or {},
         "depth": depth, "status": status.value, "created_at": now}
        for item in happenings
    ])
    return len(happenings)


async def lock_pending(session: AsyncSession, *, limit: int) -> list[AutomationCause]:
    """Pending causes, oldest first, locked for this transaction (SKIP LOCKED on PostgreSQL:
    N evaluators share them, none waits for another)."""
    statement = sa.select(AutomationCause.id).where(AutomationCause.status == CauseStatus.PENDING).order_by(AutomationCause.id).limit(limit)
    if is_postgres(session):
        statement = statement.with_for_update(skip_locked=True)
    ids = list((await session.execute(statement)).scalars())
    if not ids:
        return []
    rows = await session.execute(sa.select(AutomationCause).where(AutomationCause.id.in_(ids)).order_by(AutomationCause.id)
                                 .execution_options(populate_existing=True))
    return list(rows.scalars())


async def mark_evaluated(session: AsyncSession, cause_ids: list[int], *, now: datetime) -> None:
    if cause_ids:
        await session.execute(sa.update(AutomationCause).where(AutomationCause.id.in_(cause_ids))
                              .values(status=CauseStatus.EVALUATED, evaluated_at=now))


async def claim_firing(session: AsyncSession, *, rule_id: int, cause_id: int, customer_id: int, status: str,
                       now: datetime) -> int | None:
    """The firing's id, written now; None when this rule has fired for this cause already (by
    another evaluator, or before a crash): then nothing is to be done."""
    table = AutomationFiring.__table__
    statement = (insert_on_conflict(session, table)
                 .values(rule_id=rule_id, cause_id=cause_id, customer_id=customer_id, status=status, outcomes=[], created_at=now)
                 .on_conflict_do_nothing(index_elements=["rule_id", "cause_id"]).returning(table.c.id))
    return (await session.execute(statement)).scalar_one_or_none()


async def set_outcomes(session: AsyncSession, firing_id: int, outcomes: list[str]) -> None:
    await session.execute(sa.update(AutomationFiring).where(AutomationFiring.id == firing_id).values(outcomes=outcomes))


@dataclass
class FiringRow:
    id: int
    rule_id: int
    rule_name: str
    cause_id: int
    cause_kind: str
    cause_value: str | None
    depth: int
    customer_id: int
    customer_name: str | None
    status: str
    outcomes: list[str]
    created_at: datetime


async def recent_firings(session: AsyncSession, *, rule_id: int | None = None, limit: int = 100) -> list[FiringRow]:
    statement = (
        sa.select(AutomationFiring, AutomationRule.name, AutomationCause.kind, AutomationCause.value, AutomationCause.depth,
                  sa.func.coalesce(Customer.full_name, Customer.display_name))
        .join(AutomationRule, AutomationRule.id == AutomationFiring.rule_id)
        .join(AutomationCause, AutomationCause.id == AutomationFiring.cause_id)
        .join(Customer, Customer.id == AutomationFiring.customer_id)
        .order_by(AutomationFiring.id.desc()).limit(limit)
    )
    if rule_id is not None:
        statement = statement.where(AutomationFiring.rule_id == rule_id)
    return [FiringRow(firing.id, firing.rule_id, name, firing.cause_id, kind, value, depth, firing.customer_id, customer_name,
                      firing.status, list(firing.outcomes or []), firing.created_at)
            for firing, name, kind, value, depth, customer_name in (await session.execute(statement)).all()]


async def firing_counts(session: AsyncSession) -> dict[int, int]:
    """Rule id → its firings (the list page)."""
    statement = sa.select(AutomationFiring.rule_id, sa.func.count()).group_by(AutomationFiring.rule_id)
    return {rule_id: count for rule_id, count in (await session.execute(statement)).all()}


# -- webhook calls -----------------------------------------------------------------------------


async def add_call(session: AsyncSession, *, firing_id: int, rule_id: int, key: str, url: str, body: str, now: datetime) -> int | None:
    """The call, stored with the firing (ON CONFLICT on its key: decided twice, stored once)."""
    table = AutomationWebhookCall.__table__
    statement = (insert_on_conflict(session, table)
                 .values(firing_id=firing_id, rule_id=rule_id, idempotency_key=key, url=url, body=body,
                         status=WebhookCallStatus.PENDING.value, attempts=0, next_attempt_at=now, created_at=now)
                 .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(table.c.id))
    return (await session.execute(statement)).scalar_one_or_none()


async def claim_call(session: AsyncSession, call_id: int, *, now: datetime, claim_timeout: timedelta) -> AutomationWebhookCall | None:
    """Take a due call for posting (one conditional UPDATE: one worker of N wins); None when it
    is not due, done, or held by a live worker."""
    table = AutomationWebhookCall.__table__
    statement = (
        sa.update(table)
        .where(table.c.id == call_id, sa.or_(
            sa.and_(table.c.status == WebhookCallStatus.PENDING, table.c.next_attempt_at <= now),
            sa.and_(table.c.status == WebhookCallStatus.SENDING, table.c.claimed_at < now - claim_timeout),
        ))
        .values(status=WebhookCallStatus.SENDING, attempts=table.c.attempts + 1, claimed_at=now)
        .returning(table.c.id)
    )
    if (await session.execute(statement)).scalar_one_or_none() is None:
        return None
    return await session.get(AutomationWebhookCall, call_id, populate_existing=True)


async def due_calls(session: AsyncSession, *, now: datetime, claim_timeout: timedelta, limit: int = 100) -> list[int]:
    table = AutomationWebhookCall.__table__
    statement = sa.select(table.c.id).where(sa.or_(
        sa.and_(table.c.status == WebhookCallStatus.PENDING, table.c.next_attempt_at <= now),
        sa.and_(table.c.status == WebhookCallStatus.SENDING, table.c.claimed_at < now - claim_timeout),
    )).order_by(table.c.id).limit(limit)
    return list((await session.execute(statement)).scalars())


async def finish_call(session: AsyncSession, call_id: int, *, status: WebhookCallStatus, code: int | None, error: str | None,
                      now: datetime, retry_at: datetime | None = None) -> None:
    values: dict = {"status": status, "last_status_code": code, "last_error": (error or None) and error[:500], "claimed_at": None}
    if status == WebhookCallStatus.SENT:
        values["sent_at"] = now
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    await session.execute(sa.update(AutomationWebhookCall).where(AutomationWebhookCall.id == call_id).values(**values))


async def calls_of_rule(session: AsyncSession, rule_id: int, *, limit: int = 50) -> list[AutomationWebhookCall]:
    statement = (sa.select(AutomationWebhookCall).where(AutomationWebhookCall.rule_id == rule_id)
                 .order_by(AutomationWebhookCall.id.desc()).limit(limit))
    return list((await session.execute(statement)).scalars())


# -- segment entered ---------------------------------------------------------------------------


async def segment_looks_due(session: AsyncSession, *, now: datetime, every: timedelta) -> list[tuple[int, int, datetime | None]]:
    """The enabled segment_entered rules due for a look: (rule id, segment id, last look)."""
    return [(rule_id, int(segment_id), checked_at) for rule_id, segment_id, checked_at in (await session.execute(
        sa.select(AutomationRule.id, AutomationRule.trigger_value, AutomationRule.segment_checked_at).where(
            AutomationRule.trigger == AutomationTrigger.SEGMENT_ENTERED, AutomationRule.enabled.is_(True),
            sa.or_(AutomationRule.segment_checked_at.is_(None), AutomationRule.segment_checked_at <= now - every),
        )
    )).all()]


async def claim_segment_look(session: AsyncSession, rule_id: int, checked_at: datetime | None, *, now: datetime) -> bool:
    """Take the look for this transaction (one conditional UPDATE: of N workers one looks)."""
    table = AutomationRule.__table__
    same = table.c.segment_checked_at.is_(None) if checked_at is None else table.c.segment_checked_at == checked_at
    return (await session.execute(sa.update(table).where(table.c.id == rule_id, same).values(segment_checked_at=now))).rowcount == 1


async def look_at_segment(session: AsyncSession, rule_id: int, segment_id: int, members: sa.Select, *, first: bool, now: datetime) -> int:
    """The segment's newcomers since the last look get a segment_entered cause for this rule (its
    id in `ref_id`: another rule on the same segment looks for itself), set-based; they are
    remembered and those who left forgotten. The first look only remembers."""
    seen = AutomationSegmentMember.__table__
    current = members.subquery("members")
    newcomers = sa.select(current.c[0].label("id")).where(
        ~sa.exists().where(seen.c.rule_id == rule_id, seen.c.customer_id == current.c[0]))
    recorded = 0
    if not first:
        table = AutomationCause.__table__
        fresh = newcomers.subquery("fresh")
        rows = sa.select(
            sa.literal(AutomationTrigger.SEGMENT_ENTERED.value, table.c.kind.type), fresh.c.id,
            sa.literal(str(segment_id), table.c.value.type), sa.literal(rule_id, table.c.ref_id.type),
            sa.literal({}, table.c.data.type), sa.literal(0, table.c.depth.type),
            sa.literal(CauseStatus.PENDING.value, table.c.status.type), sa.literal(now, table.c.created_at.type),
        )
        recorded = (await session.execute(sa.insert(table).from_select(
            ["kind", "customer_id", "value", "ref_id", "data", "depth", "status", "created_at"], rows))).rowcount or 0
    remembered = sa.select(sa.literal(rule_id, seen.c.rule_id.type), newcomers.subquery().c.id).where(sa.true())
    await session.execute(insert_on_conflict(session, seen).from_select(["rule_id", "customer_id"], remembered).on_conflict_do_nothing())
    await session.execute(sa.delete(seen).where(seen.c.rule_id == rule_id, seen.c.customer_id.not_in(sa.select(current.c[0]))))
    return recorded


# -- the daily looks ---------------------------------------------------------------------------


async def settings(session: AsyncSession) -> AutomationSettings:
    found = await session.get(AutomationSettings, 1)
    if found is None:  # (the migration writes the row; a database made otherwise gets the defaults)
        # Workers starting together each find no row: one INSERT wins, the others' do nothing.
        defaults = AutomationSettings(id=1).model_dump()
        await session.execute(insert_on_conflict(session, AutomationSettings.__table__).values(defaults).on_conflict_do_nothing())
        found = await session.get(AutomationSettings, 1)
    return found


async def claim_daily(session: AsyncSession, column: str, day: date) -> bool:
    """Take today's look (`column`: birthday_ran_on or coupons_ran_on) for this transaction: one
    conditional UPDATE, so of N workers one looks. The causes' dedupe keys would make a second
    look harmless anyway; the claim saves the work."""
    await settings(session)
    table = AutomationSettings.__table__
    statement = sa.update(table).where(table.c.id == 1, sa.or_(table.c[column].is_(None), table.c[column] < day)).values({column: day})
    return (await session.execute(statement)).rowcount == 1


async def record_birthdays(session: AsyncSession, *, month: int, year: int, now: datetime) -> int:
    """A birthday_month cause for each customer on LINE whose birthday falls in `month`, once per
    customer and `year` (the dedupe key), set-based: one INSERT … SELECT … ON CONFLICT DO NOTHING."""
    if not await _anyone_listens(session, AutomationTrigger.BIRTHDAY_MONTH):
        return 0
    table = AutomationCause.__table__
    key = sa.literal(f"birthday_month:{year}:", table.c.dedupe_key.type) + sa.cast(Customer.id, sa.String)
    rows = sa.select(
        sa.literal(AutomationTrigger.BIRTHDAY_MONTH.value, table.c.kind.type), Customer.id, sa.literal(str(year), table.c.value.type),
        sa.literal({"month": month, "year": year}, table.c.data.type), sa.literal(0, table.c.depth.type),
        sa.literal(CauseStatus.PENDING.value, table.c.status.type), sa.literal(now, table.c.created_at.type), key,
    ).where(
        Customer.birthday.is_not(None), sa.extract("month", Customer.birthday) == month,
        Customer.line_user_id.is_not(None), Customer.followed.is_(True), Customer.merged_into_id.is_(None),
    )
    statement = insert_on_conflict(session, table).from_select(
        ["kind", "customer_id", "value", "data", "depth", "status", "created_at", "dedupe_key"], rows,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return (await session.execute(statement)).rowcount or 0


async def record_expiring(session: AsyncSession, *, within: timedelta, now: datetime) -> int:
    """A coupon_expiring cause for each unused grant expiring within `within`, once per grant
    (the dedupe key), set-based. Recorded when the built-in reminder is on or a rule listens."""
    if not (await settings(session)).coupon_reminder_enabled and not await _anyone_listens(session, AutomationTrigger.COUPON_EXPIRING):
        return 0
    table = AutomationCause.__table__
    key = sa.literal("coupon_expiring:", table.c.dedupe_key.type) + sa.cast(CouponGrant.id, sa.String)
    rows = sa.select(
        sa.literal(AutomationTrigger.COUPON_EXPIRING.value, table.c.kind.type), CouponGrant.customer_id,
        sa.cast(CouponGrant.coupon_id, sa.String), CouponGrant.id,
        sa.literal({}, table.c.data.type), sa.literal(0, table.c.depth.type),
        sa.literal(CauseStatus.PENDING.value, table.c.status.type), sa.literal(now, table.c.created_at.type), key,
    ).where(CouponGrant.status == GrantStatus.ISSUED, CouponGrant.expires_at > now, CouponGrant.expires_at <= now + within)
    statement = insert_on_conflict(session, table).from_select(
        ["kind", "customer_id", "value", "ref_id", "data", "depth", "status", "created_at", "dedupe_key"], rows,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return (await session.execute(statement)).rowcount or 0


async def processing_stopped(session: AsyncSession, customer_ids: set[int]) -> set[int]:
    """Those of `customer_ids` whose data's use is stopped at their request, or who were erased."""
    if not customer_ids:
        return set()
    statement = sa.select(Customer.id).where(Customer.id.in_(customer_ids), sa.or_(
        Customer.processing_stopped_at.is_not(None), Customer.erased_at.is_not(None)))
    return set((await session.execute(statement)).scalars())
