"""Deliveries: the outbox of messages to LINE.

A delivery is written in the same transaction as the decision to send it, then
claimed and sent. Claiming is one conditional UPDATE, so two workers (or a worker
and the sweeper) never both send the same delivery.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

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
