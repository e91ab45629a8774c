"""Deliveries: the outbox of messages to LINE.

A delivery is written in the same transaction as the decision to send it, then
claimed and sent. Claiming is one conditional UPDATE, so two workers (or a worker
and the sweeper) never both send the same delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import insert_on_conflict, insert_rows
from .models import Delivery, DeliveryKind, DeliveryStatus, Direction, Interaction
from .types import utcnow

# Namespace for retry keys derived from what is sent (LINE_FACTS: derive, store, reuse).
RETRY_KEY_NAMESPACE = uuid.UUID("6f1c1e54-0b7e-4c3f-9a53-3d1f2a9b7c11")

# A delivery claimed longer ago than this belongs to a worker that died mid-send
# (it must exceed the longest send: LINE timeout × attempts plus backoff).
CLAIM_TIMEOUT = timedelta(seconds=60)


def retry_key_for(*parts: object) -> str:
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, ":".join(str(part) for part in parts)))


async def create(
    session: AsyncSession,
    *,
    customer_id: int,
    messages: list[dict],
    sender_type: str,
    retry_key: str,
    sender_id: str | None = None,
    inbound_event_id: int | None = None,
    reply_token: str | None = None,
    reply_deadline: datetime | None = None,
) -> Delivery:
    """The delivery and one outbound interaction per message, on the timeline at once."""
    delivery = Delivery(
        customer_id=customer_id,
        kind=DeliveryKind.MESSAGE,
        sender_type=sender_type,
        sender_id=sender_id,
        inbound_event_id=inbound_event_id,
        reply_token=reply_token,
        reply_deadline=reply_deadline,
        messages=messages,
        retry_key=retry_key,
    )
    session.add(delivery)
    await session.flush()
    for message in messages:
        session.add(
            Interaction(
                customer_id=customer_id,
                direction=Direction.OUT,
                kind=f"message.{message.get('type', 'unknown')}",
                text=message.get("text") if message.get("type") == "text" else message.get("altText"),
                payload=message,
                sender_type=sender_type,
                sender_id=sender_id,
                inbound_event_id=inbound_event_id,
                delivery_id=delivery.id,
            )
        )
    await session.flush()
    return delivery


@dataclass(frozen=True)
class NewMessage:
    """One delivery of `create_many`: what `create` takes, for a batch."""

    customer_id: int
    messages: list[dict]
    sender_type: str
    retry_key: str
    sender_id: str | None = None


async def create_many(session: AsyncSession, items: Sequence[NewMessage]) -> dict[str, int]:
    """`create` for a batch, set-based: one multi-row INSERT of the deliveries and one of their
    timeline rows, whatever the batch's size. A retry key already in the outbox is skipped (ON
    CONFLICT DO NOTHING): the same send decided twice is stored once. Retry key → new delivery id.
    Stamped with the real time, as `create`'s rows are: the sweeper and the sender's 23-hour
    retry-key rule read `created_at`."""
    if not items:
        return {}
    now = utcnow()
    table = Delivery.__table__
    rows = [{"customer_id": item.customer_id, "kind": DeliveryKind.MESSAGE.value, "sender_type": item.sender_type,
             "sender_id": item.sender_id, "messages": item.messages, "retry_key": item.retry_key,
             "status": DeliveryStatus.PENDING.value, "attempts": 0, "created_at": now} for item in items]
    statement = (insert_on_conflict(session, table).values(rows).on_conflict_do_nothing(index_elements=["retry_key"])
                 .returning(table.c.retry_key, table.c.id))
    created = {key: delivery_id for key, delivery_id in (await session.execute(statement)).all()}
    timeline = [
        (item.customer_id, Direction.OUT.value, f"message.{message.get('type', 'unknown')}",
         message.get("text") if message.get("type") == "text" else message.get("altText"),
         item.sender_type, item.sender_id, created[item.retry_key], now, message)
        for item in items if item.retry_key in created for message in item.messages
    ]
    await insert_rows(session, Interaction.__table__, _TIMELINE_COLUMNS, timeline, json_last=True)
    return created


_TIMELINE_COLUMNS = ("customer_id", "direction", "kind", "text", "sender_type", "sender_id", "delivery_id", "created_at", "payload")


async def create_effect(
    session: AsyncSession, *, customer_id: int, kind: DeliveryKind, effect: dict, retry_key: str, inbound_event_id: int | None = None,
    sender_type: str = "bot", sender_id: str | None = None,
) -> Delivery:
    """A LINE-side effect (e.g. kind "rich_menu", effect {"menu": "registered"}) in the
    outbox: sent after commit like a message, retried if the sender dies."""
    delivery = Delivery(
        customer_id=customer_id, sender_type=sender_type, sender_id=sender_id, inbound_event_id=inbound_event_id,
        kind=kind, messages=[], effect=effect, retry_key=retry_key,
    )
    session.add(delivery)
    await session.flush()
    return delivery


async def by_retry_key(session: AsyncSession, retry_key: str) -> Delivery | None:
    return (await session.execute(sa.select(Delivery).where(Delivery.retry_key == retry_key))).scalar_one_or_none()


async def claim(session: AsyncSession, delivery_id: int, *, claim_timeout: timedelta = CLAIM_TIMEOUT) -> Delivery | None:
    """Take a delivery for sending; None if it is done or another sender holds it."""
    now = utcnow()
    statement = (
        sa.update(Delivery)
        .where(
            Delivery.id == delivery_id,
            sa.or_(
                Delivery.status == DeliveryStatus.PENDING,
                sa.and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_at < now - claim_timeout),
            ),
        )
        .values(status=DeliveryStatus.SENDING, attempts=Delivery.attempts + 1, claimed_at=now)
        .returning(Delivery.id)
    )
    if (await session.execute(statement)).scalar_one_or_none() is None:
        return None
    delivery = await session.get(Delivery, delivery_id, populate_existing=True)
    return delivery


async def finish(
    session: AsyncSession,
    delivery_id: int,
    *,
    status: DeliveryStatus,
    method: str | None,
    line_request_id: str | None = None,
    error: str | None = None,
) -> None:
    values: dict = {"status": status, "method": method, "line_request_id": line_request_id, "last_error": error}
    if status == DeliveryStatus.SENT:
        values["sent_at"] = utcnow()
    await session.execute(sa.update(Delivery).where(Delivery.id == delivery_id).values(**values))


async def forget_reply_token(session: AsyncSession, delivery_id: int) -> None:
    """The reply was refused: from now on this delivery goes out by push only."""
    await session.execute(sa.update(Delivery).where(Delivery.id == delivery_id).values(reply_token=None, reply_deadline=None))


async def release(session: AsyncSession, delivery_id: int, error: str) -> None:
    """Give a claimed delivery back for a later try (LINE was down or busy)."""
    await session.execute(
        sa.update(Delivery).where(Delivery.id == delivery_id).values(status=DeliveryStatus.PENDING, last_error=error[:4000])
    )


async def due_for_retry(
    session: AsyncSession, *, older_than: timedelta, claim_timeout: timedelta = CLAIM_TIMEOUT, limit: int = 500
) -> list[int]:
    now = utcnow()
    statement = (
        sa.select(Delivery.id)
        .where(
            sa.or_(
                sa.and_(Delivery.status == DeliveryStatus.PENDING, Delivery.created_at < now - older_than),
                sa.and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_at < now - claim_timeout),
            )
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())
