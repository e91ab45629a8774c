"""Narrowcast delivery's stored stages (issue 15 §2): one row per campaign variant sent to a LINE
audience. A worker leases a row (one conditional UPDATE, SKIP LOCKED on PostgreSQL), does one
stage's work against LINE, and stores the result fenced by its lease: a worker killed anywhere
leaves a row whose lease runs out, and the next worker continues from the stored stage.

Stages: uploading (the queued LINE ids go up in customer order, the last uploaded id stored after
each chunk) → waiting (LINE builds the audience) → sending (the retry key is stored and the
campaign marked as handed to LINE before the request) → delivering (LINE's progress polled) →
done (the campaign's batches marked from LINE's counts; the audience deleted afterwards).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .campaign_batches import RETRY_KEY_NAMESPACE, _LEFT_OUT_AT_SEND
from .models import (
    BatchStatus, Campaign, CampaignBatch, CampaignNarrowcast, CampaignRecipient, CampaignStatus, Customer, NarrowcastState,
    RecipientStatus,
)

_rows = CampaignNarrowcast.__table__
_campaigns = Campaign.__table__
_batches = CampaignBatch.__table__
_recipients = CampaignRecipient.__table__
_customers = Customer.__table__

ACTIVE = (NarrowcastState.UPLOADING, NarrowcastState.WAITING, NarrowcastState.SENDING, NarrowcastState.DELIVERING)


def retry_key(campaign_id: int, variant_id: int) -> str:
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{campaign_id}:{variant_id}:narrowcast"))


async def create_for(session: AsyncSession, campaign_id: int, variant_ids: list[int], *, now: datetime) -> None:
    if variant_ids:
        await session.execute(_rows.insert(), [
            {"campaign_id": campaign_id, "variant_id": variant_id, "state": NarrowcastState.UPLOADING, "uploaded_through": 0,
             "uploaded": 0, "retry_key": retry_key(campaign_id, variant_id), "duplicate": False, "audience_deleted": False,
             "next_look_at": now, "updated_at": now}
            for variant_id in variant_ids])


@dataclass(frozen=True)
class Leased:
    id: int
    campaign_id: int
    variant_id: int
    state: str
    audience_group_id: int | None
    uploaded_through: int
    uploaded: int
    retry_key: str
    first_attempt_at: datetime | None
    request_id: str | None
    audience_deleted: bool
    lease_until: datetime
    campaign_status: str


async def lease(session: AsyncSession, *, now: datetime, until: datetime) -> Leased | None:
    """One row with work due, leased until `until`. Rows of paused campaigns wait; rows of a
    cancelled campaign are taken to clean up (before the request went: nothing was sent)."""
    n, c = _rows.alias("n"), _campaigns.alias("c")
    work = sa.or_(
        sa.and_(n.c.state.in_([NarrowcastState.UPLOADING, NarrowcastState.WAITING]),
                c.c.status.in_([CampaignStatus.RUNNING, CampaignStatus.CANCELLED])),
        n.c.state.in_([NarrowcastState.SENDING, NarrowcastState.DELIVERING]),
        sa.and_(n.c.state.in_([NarrowcastState.DONE, NarrowcastState.CANCELLED]), sa.not_(n.c.audience_deleted),
                n.c.audience_group_id.is_not(None)),
    )
    due = (sa.select(n.c.id).join(c, c.c.id == n.c.campaign_id)
           .where(work, sa.or_(n.c.next_look_at.is_(None), n.c.next_look_at <= now),
                  sa.or_(n.c.lease_until.is_(None), n.c.lease_until < now))
           .order_by(n.c.next_look_at, n.c.id).limit(1).with_for_update(of=n, skip_locked=True))
    row = (await session.execute(
        _rows.update().where(_rows.c.id.in_(due.scalar_subquery())).values(lease_until=until)
        .returning(_rows.c.id, _rows.c.campaign_id, _rows.c.variant_id, _rows.c.state, _rows.c.audience_group_id,
                   _rows.c.uploaded_through, _rows.c.uploaded, _rows.c.retry_key, _rows.c.first_attempt_at, _rows.c.request_id,
                   _rows.c.audience_deleted, _rows.c.lease_until))).first()
    if row is None:
        return None
    status = (await session.execute(sa.select(_campaigns.c.status).where(_campaigns.c.id == row.campaign_id))).scalar_one()
    return Leased(*row, campaign_status=status)


async def save(session: AsyncSession, leased: Leased, *, now: datetime, release: bool = True, **values: Any) -> bool:
    """Store a stage's result, if the lease is still ours (False: another worker took the row over)."""
    if release:
        values["lease_until"] = None
    result = await session.execute(
        _rows.update().where(_rows.c.id == leased.id, _rows.c.lease_until == leased.lease_until).values(updated_at=now, **values))
    return result.rowcount == 1


async def leave_out_changed(session: AsyncSession, campaign_id: int, variant_id: int) -> int:
    """Queued recipients who blocked the account or opted out since the snapshot are marked so
    (one UPDATE per reason) and not uploaded. Returns how many."""
    left = 0
    for reason, (status, text) in _LEFT_OUT_AT_SEND.items():
        c = _customers
        condition = (sa.or_(c.c.blocked, sa.not_(c.c.followed)) if reason == 1
                     else sa.and_(sa.not_(c.c.marketing_opt_in), c.c.marketing_consent_changed_at.is_not(None)))
        result = await session.execute(
            _recipients.update()
            .where(_recipients.c.campaign_id == campaign_id, _recipients.c.variant_id == variant_id,
                   _recipients.c.status == RecipientStatus.QUEUED,
                   _recipients.c.customer_id.in_(sa.select(c.c.id).where(condition)))
            .values(status=status, reason=text))
        left += result.rowcount
    return left


async def next_ids(session: AsyncSession, campaign_id: int, variant_id: int, *, after: int, limit: int) -> list[tuple[int, str]]:
    """The next queued recipients (customer id, LINE id) after customer `after`, in customer order."""
    rows = await session.execute(
        sa.select(_recipients.c.customer_id, _recipients.c.line_user_id)
        .where(_recipients.c.campaign_id == campaign_id, _recipients.c.variant_id == variant_id,
               _recipients.c.status == RecipientStatus.QUEUED, _recipients.c.customer_id > after)
        .order_by(_recipients.c.customer_id).limit(limit))
    return [(customer_id, line_user_id) for customer_id, line_user_id in rows]


async def hand_to_line(session: AsyncSession, campaign_id: int, *, now: datetime) -> bool:
    """The point of no return, with the campaign row locked by the UPDATE: true if the campaign
    is still running (from now on it cannot be paused or cancelled); false if a pause or a cancel
    came first (then nothing is sent)."""
    result = await session.execute(
        _campaigns.update().where(_campaigns.c.id == campaign_id, _campaigns.c.status == CampaignStatus.RUNNING)
        .values(narrowcast_sent_at=sa.func.coalesce(_campaigns.c.narrowcast_sent_at, now), updated_at=now))
    return result.rowcount == 1


async def finish_batches(session: AsyncSession, campaign_id: int, variant_id: int, status: BatchStatus, *, now: datetime,
                         request_id: str | None = None, error: str | None = None, duplicate: bool = False) -> None:
    """The variant's batches take the narrowcast's outcome (one UPDATE): a queued recipient's
    status is their batch's, as for multicast."""
    await session.execute(
        _batches.update()
        .where(_batches.c.campaign_id == campaign_id, _batches.c.variant_id == variant_id,
               _batches.c.status.in_([BatchStatus.PENDING, BatchStatus.SENDING]))
        .values(status=status, sent_at=now if status == BatchStatus.SENT else None, line_request_id=request_id,
                last_error=error, duplicate=duplicate, attempts=_batches.c.attempts + 1,
                first_attempt_at=sa.func.coalesce(_batches.c.first_attempt_at, now)))


async def of_campaign(session: AsyncSession, campaign_id: int) -> list[CampaignNarrowcast]:
    rows = await session.execute(sa.select(CampaignNarrowcast).where(CampaignNarrowcast.campaign_id == campaign_id)
                                 .order_by(CampaignNarrowcast.variant_id))
    return list(rows.scalars())
