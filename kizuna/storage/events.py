"""Inbound webhook events: stored once, processed in order per source."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from .db import any_of, pairs_of, transaction
from .errors import Conflict, NotFound
from .models import Customer, EventStatus, InboundEvent
from .queue import QueueUnavailable, WorkQueue
from .types import utcnow

_table = InboundEvent.__table__


@dataclass(frozen=True)
class StoredEvent:
    id: int
    source_key: str
    webhook_event_id: str
    status: EventStatus  # pending, or parked when it arrived invalid


def event_row(
    *,
    webhook_event_id: str,
    event_type: str,
    source_key: str,
    line_user_id: str | None,
    event_timestamp: int,
    is_redelivery: bool,
    payload: dict,
    received_at: datetime,
    parked_reason: str | None = None,
) -> dict:
    """The `inbound_events` row of one webhook event, its fields already checked by the
    caller (and fitting their columns). With a `parked_reason` the event is stored parked:
    kept, listed with the reason, never processed."""
    return {
        "webhook_event_id": webhook_event_id,
        "event_type": event_type,
        "source_key": source_key,
        "line_user_id": line_user_id,
        "event_timestamp": event_timestamp,
        "is_redelivery": is_redelivery,
        "payload": payload,
        "status": EventStatus.PENDING if parked_reason is None else EventStatus.PARKED,
        "attempts": 0,
        "last_error": parked_reason,
        "received_at": received_at,
        "processed_at": None if parked_reason is None else received_at,
    }


async def store_events(connection: AsyncConnection, rows: list[dict]) -> list[StoredEvent]:
    """Insert events (`event_row`s with distinct webhook_event_ids), skipping any whose
    webhookEventId is already stored.

    The uniqueness is the database's own (ON CONFLICT DO NOTHING), so concurrent
    duplicates on several processes are one row. Returns only the new rows, in the order
    given. Takes a Core connection: this is the webhook's hot path, no ORM needed.

    On PostgreSQL the batch is ONE statement whatever its size (`_PG_INSERT`: the rows
    as column arrays, prepared once per connection), sent on the driver's connection: it
    joins the caller's transaction if one is already open, and is atomic on its own
    otherwise (no BEGIN/COMMIT round trips for a caller that runs nothing else).
    """
    if not rows:
        return []
    if connection.dialect.name == "postgresql":
        raw = await connection.get_raw_connection()
        records = await raw.driver_connection.fetch(_PG_INSERT, *_pg_columns(rows))
        return [StoredEvent(r["id"], r["source_key"], r["webhook_event_id"], r["status"]) for r in records]
    statement = (
        sqlite.insert(_table)
        .on_conflict_do_nothing(index_elements=["webhook_event_id"])
        .returning(_table.c.id, _table.c.source_key, _table.c.webhook_event_id, _table.c.status)
    )
    # executemany: the statement is compiled once per batch whatever its size (a
    # multi-row .values() is compiled per row); SQLAlchemy still sends it as multi-row
    # INSERTs ("insertmanyvalues").
    result = await connection.execute(statement, rows)
    return [StoredEvent(row.id, row.source_key, row.webhook_event_id, row.status) for row in result]


# One statement for a whole batch: each column comes as one array parameter. The payload
# comes as JSON text and is cast to jsonb here.
_PG_INSERT = """
INSERT INTO inbound_events (webhook_event_id, event_type, source_key, line_user_id, event_timestamp,
                            is_redelivery, payload, status, attempts, last_error, received_at, processed_at)
SELECT e.webhook_event_id, e.event_type, e.source_key, e.line_user_id, e.event_timestamp,
       e.is_redelivery, e.payload::jsonb, e.status, e.attempts, e.last_error, e.received_at, e.processed_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
            $6::boolean[], $7::text[], $8::text[], $9::integer[], $10::text[], $11::timestamptz[], $12::timestamptz[])
     AS e(webhook_event_id, event_type, source_key, line_user_id, event_timestamp,
          is_redelivery, payload, status, attempts, last_error, received_at, processed_at)
ON CONFLICT (webhook_event_id) DO NOTHING
RETURNING id, source_key, webhook_event_id, status
"""
_PG_COLUMNS = ("webhook_event_id", "event_type", "source_key", "line_user_id", "event_timestamp", "is_redelivery",
               "payload", "status", "attempts", "last_error", "received_at", "processed_at")


def _pg_columns(rows: list[dict]) -> list[list]:
    """The rows as the statement's column arrays."""
    columns = [[row[name] for row in rows] for name in _PG_COLUMNS]
    columns[6] = [_json_text(payload) for payload in columns[6]]
    if any(received_at.tzinfo is None for received_at in columns[10]):
        raise ValueError("naive datetime in an inbound event row")  # as UTCDateTime refuses them
    return columns


def _json_text(value: dict) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, say: json writes anything a JSON value holds
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def next_pending(session: AsyncSession, source_key: str) -> InboundEvent | None:
    """The oldest pending event of one source: LINE's timestamp first, then arrival."""
    statement = (
        sa.select(InboundEvent)
        .where(InboundEvent.source_key == source_key, InboundEvent.status == EventStatus.PENDING)
        .order_by(InboundEvent.event_timestamp, InboundEvent.id)
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def claim_next(session: AsyncSession, source_key: str) -> InboundEvent | None:
    """The source's oldest pending event (as `next_pending`), its attempt counted, in one
    statement; None when the source has none.

    The attempt is counted and committed before handlers run, so an event that crashes its
    worker every time is parked instead of crashing workers forever. The attempt number
    (the returned `attempts`) is also the fencing token of this try: only the latest claim
    may mark the event done (`mark_done`), so a worker that lost its hold on the source (a
    Redis restart, a lapsed lock) cannot commit it a second time."""
    oldest = (
        sa.select(_table.c.id)
        .where(_table.c.source_key == source_key, _table.c.status == EventStatus.PENDING)
        .order_by(_table.c.event_timestamp, _table.c.id)
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        sa.update(InboundEvent)
        .where(InboundEvent.id == oldest, InboundEvent.status == EventStatus.PENDING)
        .values(attempts=InboundEvent.attempts + 1)
        .returning(InboundEvent)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def claim_next_many(sessions: async_sessionmaker[AsyncSession], source_keys: list[str]) -> list[tuple[InboundEvent, bool]]:
    """`claim_next` for several sources, committed: each source's oldest pending event, its
    attempt counted (the fencing token, as there), and whether its LINE user is a customer
    already. At most one event per source, so each source's events still run one at a time,
    in order. On PostgreSQL one statement in autocommit (no BEGIN/COMMIT round trips), the
    customer check riding in its RETURNING; on SQLite (which writes RETURNING's columns
    unqualified, so the correlated check cannot ride there) a second statement."""
    async with sessions() as session:
        if session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            rows = (await session.execute(_pg_claim_many(), {"source_keys": list(source_keys)})).all()
            return [(row[0], bool(row[1])) for row in rows]
        async with session.begin():
            claimed = list((await session.execute(_claim_many(session, source_keys).returning(InboundEvent))).scalars())
            asking = sorted({row.line_user_id for row in claimed if row.line_user_id})
            found: set[str] = set()
            if asking:
                found = set((await session.execute(sa.select(Customer.line_user_id).where(Customer.line_user_id.in_(asking)))).scalars())
        return [(row, row.line_user_id in found) for row in claimed]


@functools.cache
def _pg_claim_many():
    """PostgreSQL's claim statement, built once (building it cost more than running it):
    the sources come as one array parameter, `source_keys`; the customer check rides in
    the RETURNING."""
    keys = sa.bindparam("source_keys", type_=postgresql.ARRAY(sa.String))
    known = sa.exists().where(Customer.line_user_id == InboundEvent.line_user_id).label("known")
    return _claim_update(_table.c.source_key == sa.any_(keys)).returning(InboundEvent, known)


def _claim_many(session: AsyncSession, source_keys: list[str]):
    """The UPDATE that counts an attempt of each source's oldest pending event."""
    return _claim_update(any_of(session, _table.c.source_key, source_keys, sa.String))


def _claim_update(of_sources):
    """The claim UPDATE for the sources that `of_sources` (a condition) selects."""
    ranked = (
        sa.select(
            _table.c.id,
            sa.func.row_number().over(partition_by=_table.c.source_key, order_by=(_table.c.event_timestamp, _table.c.id)).label("rank"),
        )
        .where(of_sources, _table.c.status == EventStatus.PENDING)
        .subquery()
    )
    oldest = sa.select(ranked.c.id).where(ranked.c.rank == 1)
    return (
        sa.update(InboundEvent)
        .where(InboundEvent.id.in_(oldest), InboundEvent.status == EventStatus.PENDING)
        .values(attempts=InboundEvent.attempts + 1)
        .execution_options(synchronize_session=False)
    )


async def pending_among(sessions: async_sessionmaker[AsyncSession], source_keys: list[str]) -> set[str]:
    """Which of these sources have a pending event (`any_pending` for several, one statement)."""
    if not source_keys:
        return set()
    async with sessions() as session:
        if session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        statement = sa.select(_table.c.source_key).where(
            any_of(session, _table.c.source_key, source_keys, sa.String), _table.c.status == EventStatus.PENDING
        ).distinct()
        return set((await session.execute(statement)).scalars())


async def any_pending(sessions: async_sessionmaker[AsyncSession], source_key: str) -> bool:
    """Whether the source has a pending event: one statement, outside any transaction on
    PostgreSQL (autocommit: one round trip instead of BEGIN, SELECT, ROLLBACK)."""
    async with sessions() as session:
        if session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        statement = sa.select(_table.c.id).where(_table.c.source_key == source_key, _table.c.status == EventStatus.PENDING).limit(1)
        return (await session.execute(statement)).first() is not None


class Superseded(Exception):
    """The event was taken over by another worker (or finished by one) since this worker
    claimed it: this worker's work on it must not be committed."""


def _claimed(event_id: int, attempt: int):
    return sa.and_(_table.c.id == event_id, _table.c.status == EventStatus.PENDING, _table.c.attempts == attempt)


async def mark_done(session: AsyncSession, event_id: int, attempt: int, source_key: str) -> bool:
    """Done, in the transaction that did the work; raises Superseded (rolling it back)
    when `attempt` is no longer the event's latest claim. Returns whether the source
    (`source_key`, the event's) has another pending event, seen by the same statement."""
    other = _table.alias("other")
    # Bound values only, nothing correlated: SQLite writes RETURNING's columns unqualified.
    more = sa.exists().where(other.c.source_key == source_key, other.c.status == EventStatus.PENDING, other.c.id != event_id)
    result = await session.execute(
        sa.update(_table).where(_claimed(event_id, attempt)).values(status=EventStatus.DONE, processed_at=utcnow(), last_error=None)
        .returning(more.label("more"))
    )
    row = result.first()
    if row is None:
        raise Superseded(event_id)
    return bool(row.more)


async def mark_done_many(session: AsyncSession, claims: list[tuple[int, int]]) -> set[int]:
    """`mark_done` for several (event id, attempt) claims in one statement; the ids marked.
    A claim missing from them was superseded: the caller must roll back."""
    if not claims:
        return set()
    result = await session.execute(
        sa.update(_table)
        .where(pairs_of(session, _table.c.id, _table.c.attempts, claims), _table.c.status == EventStatus.PENDING)
        .values(status=EventStatus.DONE, processed_at=utcnow(), last_error=None)
        .returning(_table.c.id)
    )
    return set(result.scalars())


async def record_failure(session: AsyncSession, event_id: int, attempt: int, error: str, *, park: bool) -> None:
    """The attempt failed (or, with `park`, the event is given up); nothing when another
    worker has claimed the event since."""
    values = {"last_error": error[:4000]}
    if park:
        values |= {"status": EventStatus.PARKED, "processed_at": utcnow()}
    await session.execute(sa.update(_table).where(_claimed(event_id, attempt)).values(**values))


async def is_claimed(session: AsyncSession, event_id: int, attempt: int) -> bool:
    """Whether `attempt` is still the event's latest claim (and it is still pending)."""
    found = await session.execute(sa.select(_table.c.id).where(_claimed(event_id, attempt)))
    return found.first() is not None


async def uncount_attempt(session: AsyncSession, event_id: int, attempt: int) -> None:
    """An attempt cut short by a database outage was not the event's fault: it does not
    count towards parking (unless the event was claimed again since)."""
    await session.execute(sa.update(_table).where(_claimed(event_id, attempt)).values(attempts=attempt - 1))


async def pending_sources(session: AsyncSession, *, older_than: timedelta | None = None, limit: int = 10_000) -> list[str]:
    """Sources with pending events (for start-up and the periodic sweep)."""
    statement = sa.select(_table.c.source_key).where(_table.c.status == EventStatus.PENDING)
    if older_than is not None:
        statement = statement.where(_table.c.received_at < utcnow() - older_than)
    statement = statement.group_by(_table.c.source_key).limit(limit)
    return list((await session.execute(statement)).scalars())


async def list_events(session: AsyncSession, *, status: EventStatus | None, limit: int, before_id: int | None = None) -> list[InboundEvent]:
    statement = sa.select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit)
    if status:
        statement = statement.where(InboundEvent.status == status)
    if before_id is not None:
        statement = statement.where(InboundEvent.id < before_id)
    return list((await session.execute(statement)).scalars())


async def requeue_parked(session: AsyncSession, event_id: int) -> str | None:
    """Pending again with a fresh attempt count, if the event is parked and its handlers ran
    (attempts > 0): one parked on arrival is invalid as LINE sent it, and running it again
    would not make it valid. The event's source, or None when it was not requeued."""
    statement = (
        sa.update(_table)
        .where(_table.c.id == event_id, _table.c.status == EventStatus.PARKED, _table.c.attempts > 0)
        .values(status=EventStatus.PENDING, attempts=0, processed_at=None)
        .returning(_table.c.source_key)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def retry_parked(sessions: async_sessionmaker[AsyncSession], queue: WorkQueue, event_id: int) -> InboundEvent:
    """An admin's retry of a parked event: requeued, and the event as committed (pending: a
    worker may take it the moment it is queued). Raises NotFound, or Conflict `not_parked`
    / `invalid_event` (parked on arrival). A queue that is down changes nothing: the event
    is pending in the database, and the sweeper queues it once the queue is back."""
    async with transaction(sessions) as session:
        source_key = await requeue_parked(session, event_id)
        if source_key is None:
            event = await session.get(InboundEvent, event_id)
            if event is None:
                raise NotFound("no such event")
            if event.status == EventStatus.PARKED:
                raise Conflict("invalid_event", f"this event was invalid as LINE sent it and is never processed: {event.last_error}")
            raise Conflict("not_parked", "only a parked event can be retried")
        event = await session.get(InboundEvent, event_id, populate_existing=True)
    try:
        await queue.put([source_key])
    except QueueUnavailable:
        pass  # logged once per outage by the queue
    return event
