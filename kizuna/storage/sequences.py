"""Step sequences (ステップ配信): the sequences, their enrolments, and the events from the shop's
systems that start or cancel them.

Where the rules live:
- Entering a sequence is an INSERT … SELECT into `sequence_enrolments`, called from where the
  triggering fact is written (registration, an order, a tag, a friend-add source, an API event),
  in that fact's transaction: a crash loses both or neither. A partial unique index keeps one
  active enrolment per (sequence, customer), so a trigger firing twice enrols once
  (ON CONFLICT DO NOTHING). Only customers who follow the account on LINE (and were not merged
  away) are enrolled: nobody else can receive a step.
- Exits that follow a fact (an order, a tag removed, a cancelling event) are one UPDATE each,
  in the fact's transaction too. Blocks and opt-outs are checked when a step falls due
  (campaigns/sequences.py): nothing is sent to those customers, whenever they left.
- Sending a due step is campaigns/sequences.py's: `lock_due` takes the due enrolments (FOR
  UPDATE SKIP LOCKED on PostgreSQL, so N workers share them; SQLite transactions are serial),
  and `advance_many` moves them on only if still at the step that was due, in the transaction
  that writes the steps' deliveries to the outbox (whose unique retry key, uuid5 of enrolment and
  step, stores a step once whatever happens).

This module imports nothing of ours beyond storage (DESIGN.md), so the hooks in orders.py,
tags.py and friend_sources.py can call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import chunked, insert_on_conflict, is_postgres
from .errors import NotFound
from .models import (
    ApiEvent,
    Customer,
    CustomerMetrics,
    Delivery,
    DeliveryStatus,
    Order,
    OrderStatus,
    EnrolmentStatus,
    ExitReason,
    SequenceEnrolment,
    SequenceSegmentMember,
    SequenceStatus,
    SequenceTrigger,
    StepSequence,
)

ORDER = "order"  # in `cancel_on`: the customer ordered (the same as the exit condition "ordered again")

# An order older than this when it arrives (a CSV import of last year's orders) starts no
# "first order" sequence: its day-4 nudge would come a year late.
FIRST_ORDER_FRESHNESS = timedelta(days=2)
_CHUNK = 1000  # customer ids per IN list (SQLite's limit on bound parameters is 32,766)


async def get(session: AsyncSession, sequence_id: int) -> StepSequence:
    sequence = await session.get(StepSequence, sequence_id)
    if sequence is None:
        raise NotFound("no such sequence")
    return sequence


async def list_all(session: AsyncSession) -> list[StepSequence]:
    return list((await session.execute(sa.select(StepSequence).order_by(StepSequence.id))).scalars())


async def add(session: AsyncSession, sequence: StepSequence) -> StepSequence:
    session.add(sequence)
    await session.flush()
    return sequence


async def replace(session: AsyncSession, sequence_id: int, fields: dict, *, now: datetime) -> tuple[StepSequence, int]:
    """Change a sequence's settings and steps (campaigns/sequences.py `update` checked them). Its
    enrolments keep their place: `current_step` is the number of steps a customer was sent, so the
    next step they get is the new list's step at that index, at the time already set. Active
    enrolments that have had as many steps as the new list holds (or more) are completed, in one
    UPDATE; the number completed."""
    sequence = await get(session, sequence_id)
    for key, value in fields.items():
        setattr(sequence, key, value)
    sequence.updated_at = now
    await session.flush()
    table = SequenceEnrolment.__table__
    done = await session.execute(
        sa.update(table)
        .where(table.c.sequence_id == sequence_id, table.c.status == EnrolmentStatus.ACTIVE,
               table.c.current_step >= len(fields.get("steps", sequence.steps)))
        .values(status=EnrolmentStatus.COMPLETED, finished_at=now, next_due_at=None)
    )
    return sequence, done.rowcount or 0


async def set_status(session: AsyncSession, sequence_id: int, status: SequenceStatus, *, now: datetime) -> StepSequence:
    sequence = await get(session, sequence_id)
    sequence.status, sequence.updated_at = status, now
    await session.flush()
    return sequence


# -- entering ----------------------------------------------------------------------------------


async def enrol(
    session: AsyncSession, trigger: SequenceTrigger, *, customer_ids: Iterable[int] | sa.Select, now: datetime,
    value: str | None = None,
) -> int:
    """Enrol the customers in every active sequence of `trigger` (and `value`, for the triggers
    that have one), in the caller's transaction; the number of enrolments made. `customer_ids`
    is a list or a select of customer ids (set-based either way: one statement per sequence)."""
    statement = sa.select(StepSequence.id, StepSequence.steps).where(
        StepSequence.trigger == trigger, StepSequence.status == SequenceStatus.ACTIVE,
    )
    if value is not None:
        statement = statement.where(StepSequence.trigger_value == value)
    sequences = (await session.execute(statement)).all()
    if not sequences:
        return 0  # the usual case: one indexed lookup and nothing more
    ids = customer_ids if isinstance(customer_ids, sa.Select) else list(customer_ids)
    if not isinstance(ids, sa.Select) and not ids:
        return 0
    made = 0
    for sequence_id, steps in sequences:
        made += await _insert_enrolments(session, sequence_id, steps, ids, now=now)
    return made


async def _insert_enrolments(session: AsyncSession, sequence_id: int, steps: list, ids: list[int] | sa.Select, *, now: datetime) -> int:
    """One INSERT … SELECT … ON CONFLICT DO NOTHING: the customers of `ids` who follow the account
    on LINE (and were not merged away) and have no active enrolment in the sequence yet."""
    if not steps:
        return 0
    table = SequenceEnrolment.__table__
    # The first step's delay counts from enrolment; a window is applied when it falls due.
    first_due = now + timedelta(minutes=int(steps[0].get("delay_minutes", 0)))
    people = sa.select(
        sa.literal(sequence_id, table.c.sequence_id.type), Customer.id,
        sa.literal(EnrolmentStatus.ACTIVE.value, table.c.status.type), sa.literal(0, table.c.current_step.type),
        sa.literal(now, table.c.enrolled_at.type), sa.literal(first_due, table.c.next_due_at.type),
    ).where(
        Customer.id.in_(ids), Customer.line_user_id.is_not(None), Customer.followed.is_(True), Customer.merged_into_id.is_(None),
        Customer.processing_stopped_at.is_(None),  # no trigger enrols a customer who asked to stop the use of their data
    )
    insert = insert_on_conflict(session, table).from_select(
        ["sequence_id", "customer_id", "status", "current_step", "enrolled_at", "next_due_at"], people,
    ).on_conflict_do_nothing()
    return (await session.execute(insert)).rowcount or 0


# -- leaving -----------------------------------------------------------------------------------


async def _exit_where(session: AsyncSession, reason: ExitReason, conditions: list, *, now: datetime) -> int:
    table = SequenceEnrolment.__table__
    statement = (
        sa.update(table)
        .where(table.c.status == EnrolmentStatus.ACTIVE, *conditions)
        .values(status=EnrolmentStatus.EXITED, exit_reason=reason, finished_at=now, next_due_at=None)
    )
    return (await session.execute(statement)).rowcount or 0


async def on_processing_stopped(session: AsyncSession, customer_id: int, *, now: datetime) -> int:
    """The customer asked to stop the use of their data: their active enrolments end now (as an
    opt-out does); resuming later enrols them again only when a trigger fires."""
    table = SequenceEnrolment.__table__
    return await _exit_where(session, ExitReason.OPTED_OUT, [table.c.customer_id == customer_id], now=now)


async def on_orders(session: AsyncSession, ordered: dict[int, datetime], *, now: datetime) -> None:
    """New completed orders arrived (customer id → their latest order time), in the orders'
    transaction: enrolments of sequences that exit on an order end ("ordered again"; an
    enrolment made by this very order stays), then first-time buyers enter "first order"."""
    if not ordered:
        return
    # An import's batch of 10,000 orders pays one small lookup when no sequence cares (the usual case).
    exiting = list((await session.execute(
        sa.select(StepSequence.id).where(StepSequence.exit_on_order.is_(True), StepSequence.status != SequenceStatus.ARCHIVED)
    )).scalars())
    table = SequenceEnrolment.__table__
    if exiting:
        for chunk in chunked(sorted(ordered), _CHUNK):
            await _exit_where(session, ExitReason.ORDERED_AGAIN, [
                table.c.customer_id.in_(chunk), table.c.enrolled_at < now, table.c.sequence_id.in_(exiting),
            ], now=now)
    fresh = sorted(customer for customer, at in ordered.items() if at >= now - FIRST_ORDER_FRESHNESS)
    for chunk in chunked(fresh, _CHUNK):
        first_time = sa.select(CustomerMetrics.customer_id).where(
            CustomerMetrics.customer_id.in_(chunk), CustomerMetrics.frequency == 1,
        )
        await enrol(session, SequenceTrigger.FIRST_ORDER, customer_ids=first_time, now=now)


async def on_tag_added(session: AsyncSession, customer_ids: Iterable[int] | sa.Select, tag: str, *, now: datetime) -> None:
    await enrol(session, SequenceTrigger.TAG_ADDED, customer_ids=customer_ids, value=tag, now=now)


async def on_tag_removed(session: AsyncSession, customer_ids: Iterable[int] | sa.Select, tag: str, *, now: datetime) -> None:
    table = SequenceEnrolment.__table__
    ids = customer_ids if isinstance(customer_ids, sa.Select) else list(customer_ids)
    await _exit_where(session, ExitReason.TAG_REMOVED, [
        table.c.customer_id.in_(ids),
        table.c.sequence_id.in_(sa.select(StepSequence.id).where(StepSequence.exit_on_tag_removed == tag)),
    ], now=now)


async def on_withdrawn(session: AsyncSession, customer_id: int, *, now: datetime) -> int:
    """The customer withdrew their membership (退会): every active enrolment exits at once."""
    table = SequenceEnrolment.__table__
    return await _exit_where(session, ExitReason.WITHDRAWN, [table.c.customer_id == customer_id], now=now)


# -- segment entered ---------------------------------------------------------------------------


async def segment_looks_due(session: AsyncSession, *, now: datetime, every: timedelta) -> list[tuple[int, int, datetime | None]]:
    """The active segment_entered sequences due for a look (none within `every`): (sequence id,
    segment id, when it was last looked at), for `claim_segment_look`."""
    return [(sequence_id, int(segment_id), checked_at) for sequence_id, segment_id, checked_at in (await session.execute(
        sa.select(StepSequence.id, StepSequence.trigger_value, StepSequence.segment_checked_at).where(
            StepSequence.trigger == SequenceTrigger.SEGMENT_ENTERED, StepSequence.status == SequenceStatus.ACTIVE,
            sa.or_(StepSequence.segment_checked_at.is_(None), StepSequence.segment_checked_at <= now - every),
        )
    )).all()]


async def claim_segment_look(session: AsyncSession, sequence_id: int, checked_at: datetime | None, *, now: datetime) -> bool:
    """Take the look for this transaction: one conditional UPDATE, so of N workers one looks.
    Done in the look's own transaction: a look that fails is given back with it (a first look
    that failed must stay a first look, or everyone in the segment would count as newcomers)."""
    table = StepSequence.__table__
    same = table.c.segment_checked_at.is_(None) if checked_at is None else table.c.segment_checked_at == checked_at
    taken = await session.execute(sa.update(table).where(table.c.id == sequence_id, same).values(segment_checked_at=now))
    return taken.rowcount == 1


async def look_at_segment(session: AsyncSession, sequence_id: int, members: sa.Select, *, first: bool, now: datetime) -> int:
    """Compare the segment's members now (`members`: a select of customer ids) with those seen at
    the last look, set-based: the newcomers are enrolled (not on the first look: they were in
    before the sequence began) and remembered; those who left are forgotten. The enrolments made."""
    seen = SequenceSegmentMember.__table__
    current = members.subquery("members")
    newcomers = sa.select(current.c.id).where(~sa.exists().where(seen.c.sequence_id == sequence_id, seen.c.customer_id == current.c.id))
    made = 0
    if not first:
        made = await _enrol_in(session, sequence_id, newcomers, now=now)
    # (SQLite parses INSERT … SELECT … ON CONFLICT only with a WHERE in the SELECT: "WHERE true")
    remembered = sa.select(sa.literal(sequence_id, seen.c.sequence_id.type), newcomers.subquery().c.id).where(sa.true())
    await session.execute(insert_on_conflict(session, seen).from_select(["sequence_id", "customer_id"], remembered)
                          .on_conflict_do_nothing())
    await session.execute(sa.delete(seen).where(seen.c.sequence_id == sequence_id,
                                                seen.c.customer_id.not_in(sa.select(current.c.id))))
    return made


async def _enrol_in(session: AsyncSession, sequence_id: int, customer_ids: sa.Select, *, now: datetime) -> int:
    steps = (await session.execute(sa.select(StepSequence.steps).where(StepSequence.id == sequence_id))).scalar_one()
    return await _insert_enrolments(session, sequence_id, steps, customer_ids, now=now)


# -- events from the shop's systems ------------------------------------------------------------


@dataclass
class EventOutcome:
    event: ApiEvent
    created: bool  # False: an event with this event_id was received before (nothing changed)
    enrolled: int = 0
    cancelled: int = 0


async def receive_event(
    session: AsyncSession, *, customer_id: int, type: str, data: dict, event_id: str | None, now: datetime,
) -> EventOutcome:
    """Store the event (once per `event_id`), then, in the same transaction: exit the customer's
    enrolments in sequences that list this type in `cancel_on`, and enrol them in the sequences
    it triggers. Cancelling first: an event that both starts and cancels (a second
    cart_abandoned) restarts nothing that was cancelled by it."""
    table = ApiEvent.__table__
    if event_id is not None:
        claim = (insert_on_conflict(session, table)
                 .values(event_id=event_id, type=type, customer_id=customer_id, data=data, created_at=now)
                 .on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.id))
        new_id = (await session.execute(claim)).scalar_one_or_none()
        if new_id is None:
            existing = (await session.execute(sa.select(ApiEvent).where(ApiEvent.event_id == event_id))).scalar_one()
            return EventOutcome(existing, created=False)
        event = await session.get(ApiEvent, new_id)
    else:
        event = ApiEvent(type=type, customer_id=customer_id, data=data, created_at=now)
        session.add(event)
        await session.flush()
    cancelling = [sequence_id for sequence_id, cancel_on in (await session.execute(
        sa.select(StepSequence.id, StepSequence.cancel_on).where(StepSequence.status != SequenceStatus.ARCHIVED)
    )).all() if type in (cancel_on or [])]
    cancelled = 0
    if cancelling:
        enrolments = SequenceEnrolment.__table__
        cancelled = await _exit_where(session, ExitReason.CANCELLED_BY_EVENT, [
            enrolments.c.customer_id == customer_id, enrolments.c.sequence_id.in_(cancelling), enrolments.c.enrolled_at < now,
        ], now=now)
    enrolled = await enrol(session, SequenceTrigger.API_EVENT, customer_ids=[customer_id], value=type, now=now)
    return EventOutcome(event, created=True, enrolled=enrolled, cancelled=cancelled)


# -- due steps ---------------------------------------------------------------------------------


@dataclass
class Due:
    enrolment: SequenceEnrolment
    sequence: StepSequence
    customer: Customer


async def lock_due(session: AsyncSession, *, now: datetime, limit: int) -> list[Due]:
    """Active enrolments of active sequences whose step is due, oldest first, locked for this
    transaction. On PostgreSQL `FOR UPDATE SKIP LOCKED`: another worker takes the next ones
    instead of waiting for these, and none is taken twice. SQLite runs one writing transaction
    at a time (BEGIN IMMEDIATE, storage/db.py), which is the same guarantee."""
    statement = (
        sa.select(SequenceEnrolment.id)
        .join(StepSequence, StepSequence.id == SequenceEnrolment.sequence_id)
        .where(SequenceEnrolment.status == EnrolmentStatus.ACTIVE, SequenceEnrolment.next_due_at <= now,
               StepSequence.status == SequenceStatus.ACTIVE)
        .order_by(SequenceEnrolment.next_due_at, SequenceEnrolment.id)
        .limit(limit)
    )
    if is_postgres(session):
        statement = statement.with_for_update(of=SequenceEnrolment.__table__, skip_locked=True)
    ids = list((await session.execute(statement)).scalars())
    if not ids:
        return []
    rows = (await session.execute(
        sa.select(SequenceEnrolment, StepSequence, Customer)
        .join(StepSequence, StepSequence.id == SequenceEnrolment.sequence_id)
        .join(Customer, Customer.id == SequenceEnrolment.customer_id)
        .where(SequenceEnrolment.id.in_(ids))
        .order_by(SequenceEnrolment.next_due_at, SequenceEnrolment.id)
        .execution_options(populate_existing=True)
    )).all()
    return [Due(enrolment, sequence, customer) for enrolment, sequence, customer in rows]


@dataclass(frozen=True)
class Move:
    """A due step handed to the outbox: the enrolment moves from `from_step` to the next, due at
    `next_due_at`, or is completed (`finished`)."""

    enrolment_id: int
    from_step: int
    next_due_at: datetime | None
    finished: bool


async def advance_many(session: AsyncSession, moves: list[Move], *, now: datetime) -> None:
    """Move the enrolments on, each only if it is still active at the step that was due (one
    UPDATE, executed for the batch). The rows are locked by `lock_due`, so the condition always
    holds; the outbox's unique retry key (uuid5 of enrolment and step) is what makes a second
    send of one step impossible whatever happens."""
    if not moves:
        return
    table = SequenceEnrolment.__table__
    statement = sa.update(table).where(
        table.c.id == sa.bindparam("m_id"), table.c.status == EnrolmentStatus.ACTIVE, table.c.current_step == sa.bindparam("m_from"),
    ).values(current_step=sa.bindparam("m_to"), next_due_at=sa.bindparam("m_due"), status=sa.bindparam("m_status"),
             finished_at=sa.bindparam("m_finished_at"), last_sent_at=sa.bindparam("m_now"))
    await session.execute(statement, [
        {"m_id": move.enrolment_id, "m_from": move.from_step, "m_to": move.from_step + 1,
         "m_due": None if move.finished else move.next_due_at,
         "m_status": (EnrolmentStatus.COMPLETED if move.finished else EnrolmentStatus.ACTIVE).value,
         "m_finished_at": now if move.finished else None, "m_now": now}
        for move in moves
    ])


async def exit_many(session: AsyncSession, exits: list[tuple[int, ExitReason]], *, now: datetime) -> None:
    if not exits:
        return
    table = SequenceEnrolment.__table__
    statement = sa.update(table).where(table.c.id == sa.bindparam("x_id"), table.c.status == EnrolmentStatus.ACTIVE).values(
        status=EnrolmentStatus.EXITED.value, exit_reason=sa.bindparam("x_reason"), finished_at=sa.bindparam("x_now"), next_due_at=None,
    )
    await session.execute(statement, [{"x_id": enrolment_id, "x_reason": reason.value, "x_now": now} for enrolment_id, reason in exits])


async def defer_many(session: AsyncSession, defers: list[tuple[int, datetime]]) -> None:
    """Due outside the send window: wait for its next opening (held, never dropped)."""
    if not defers:
        return
    table = SequenceEnrolment.__table__
    statement = sa.update(table).where(table.c.id == sa.bindparam("d_id"), table.c.status == EnrolmentStatus.ACTIVE).values(
        next_due_at=sa.bindparam("d_until"),
    )
    await session.execute(statement, [{"d_id": enrolment_id, "d_until": until} for enrolment_id, until in defers])


# -- figures -----------------------------------------------------------------------------------


@dataclass
class StepFigures:
    step: int
    reached: int = 0  # enrolments that got to this step (it was due or will be)
    sent: int = 0  # handed to the outbox
    exited: dict[str, int] = field(default_factory=dict)  # left while waiting for this step, by reason


@dataclass
class SequenceFigures:
    enrolled: int
    active: int
    completed: int
    exited: dict[str, int]
    steps: list[StepFigures]


async def figures(session: AsyncSession, sequence: StepSequence) -> SequenceFigures:
    """Counted from the enrolments (one GROUP BY): `current_step` is the number of steps sent,
    so an enrolment at step k was sent steps 0..k-1 and, if it exited, left waiting for step k."""
    rows = (await session.execute(
        sa.select(SequenceEnrolment.current_step, SequenceEnrolment.status, SequenceEnrolment.exit_reason, sa.func.count())
        .where(SequenceEnrolment.sequence_id == sequence.id)
        .group_by(SequenceEnrolment.current_step, SequenceEnrolment.status, SequenceEnrolment.exit_reason)
    )).all()
    count = len(sequence.steps)
    steps = [StepFigures(step=index) for index in range(count)]
    totals = {EnrolmentStatus.ACTIVE.value: 0, EnrolmentStatus.COMPLETED.value: 0}
    exited: dict[str, int] = {}
    enrolled = 0
    for current, status, reason, number in rows:
        enrolled += number
        if status == EnrolmentStatus.EXITED:
            exited[reason] = exited.get(reason, 0) + number
            if current < count:
                steps[current].exited[reason] = steps[current].exited.get(reason, 0) + number
        else:
            totals[status] += number
        for index in range(min(current, count)):
            steps[index].sent += number
        for index in range(min(current + 1, count)):
            steps[index].reached += number
    return SequenceFigures(enrolled=enrolled, active=totals["active"], completed=totals["completed"], exited=exited, steps=steps)


async def enrolments_of(session: AsyncSession, customer_id: int) -> list[SequenceEnrolment]:
    statement = sa.select(SequenceEnrolment).where(SequenceEnrolment.customer_id == customer_id).order_by(SequenceEnrolment.id)
    return list((await session.execute(statement)).scalars())


# -- per-step results --------------------------------------------------------------------------

ATTRIBUTION_WINDOW = timedelta(days=7)  # an order this soon after a step counts for it (as for campaigns)


@dataclass
class StepResult:
    step: int
    sent: int = 0  # delivered to LINE (accepted)
    failed: int = 0  # refused by LINE, or undetermined (never sent twice: the retry key's window ran out)
    pending: int = 0  # in the outbox, not sent yet
    buyers: int = 0  # customers with an order attributed to this step
    orders: int = 0
    revenue: int = 0


def _of_steps(column: sa.ColumnElement, sequence_id: int, steps: int) -> sa.ColumnElement:
    # The steps' deliveries: sender_id "sequence:{id}:{step}" (campaigns/sequences.py writes it).
    # Equality on each (at most 20): the sender_id index serves it whatever the collation, as a
    # LIKE prefix would not on PostgreSQL; deliveries of steps an edit removed are left out.
    return column.in_([f"sequence:{sequence_id}:{step}" for step in range(steps)])


def _before_window_end(session: AsyncSession, later: sa.ColumnElement, earlier: sa.ColumnElement) -> sa.ColumnElement:
    """`later` falls less than ATTRIBUTION_WINDOW after `earlier` (SQL on both backends)."""
    if is_postgres(session):
        return later < earlier + sa.text(f"interval '{ATTRIBUTION_WINDOW.days} days'")
    return sa.func.julianday(later) - sa.func.julianday(earlier) < ATTRIBUTION_WINDOW.days


async def step_results(session: AsyncSession, sequence_id: int, steps: int) -> list[StepResult]:
    """Per step of the sequence: its deliveries by status, and the completed orders attributed to
    it — made within 7 days after the step was sent to the customer, and before any later step of
    this sequence reached them (last touch: an order is counted for one step only). Two GROUP BY
    statements over the sequence's deliveries, whatever the number of customers."""
    results = [StepResult(step=index) for index in range(steps)]
    d = Delivery.__table__
    step_of = sa.func.substr(d.c.sender_id, len(f"sequence:{sequence_id}:") + 1)
    for step, status, count in (await session.execute(
        sa.select(step_of, d.c.status, sa.func.count()).where(d.c.sender_type == "sequence", _of_steps(d.c.sender_id, sequence_id, steps))
        .group_by(step_of, d.c.status)
    )).all():
        if not str(step).isdigit() or int(step) >= steps:
            continue  # a step removed by an edit: its deliveries are not any current step's
        result = results[int(step)]
        if status == DeliveryStatus.SENT:
            result.sent += count
        elif status in (DeliveryStatus.FAILED, DeliveryStatus.UNDETERMINED):
            result.failed += count
        else:
            result.pending += count
    o = Order.__table__
    later = d.alias("later")
    attributed = (
        sa.select(step_of.label("step"), o.c.id.label("order_id"), o.c.customer_id, o.c.total)
        .select_from(d.join(o, o.c.customer_id == d.c.customer_id))
        .where(
            d.c.sender_type == "sequence", _of_steps(d.c.sender_id, sequence_id, steps), d.c.status == DeliveryStatus.SENT,
            o.c.status == OrderStatus.COMPLETED, o.c.ordered_at >= d.c.sent_at, _before_window_end(session, o.c.ordered_at, d.c.sent_at),
            ~sa.exists().where(
                later.c.customer_id == d.c.customer_id, later.c.sender_type == "sequence", _of_steps(later.c.sender_id, sequence_id, steps),
                later.c.status == DeliveryStatus.SENT, later.c.sent_at > d.c.sent_at, later.c.sent_at <= o.c.ordered_at,
            ),
        )
    ).subquery("attributed")
    for step, buyers, orders, revenue in (await session.execute(
        sa.select(attributed.c.step, sa.func.count(sa.distinct(attributed.c.customer_id)), sa.func.count(sa.distinct(attributed.c.order_id)),
                  sa.func.coalesce(sa.func.sum(attributed.c.total), 0))
        .group_by(attributed.c.step)
    )).all():
        if str(step).isdigit() and int(step) < steps:
            result = results[int(step)]
            result.buyers, result.orders, result.revenue = buyers, orders, int(revenue)
    return results
