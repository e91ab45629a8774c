"""The request ledger (data_requests) and the third-party provision records (provision_records).

Deadline: APPI asks a business to answer disclosure, correction, stop and deletion requests
"without delay" (遅滞なく, Art. 33-35) and names no number of days; two weeks from the request
is the usual practice of Japanese businesses (and what the PPC's Q&A treats as reasonable), so a
request is due `DEADLINE` after it was received. A request answered at once (everything the
console and the API do today is synchronous) is written `done` with its outcome; the deadline is
still recorded, so the ledger shows it was met. `overdue` lists the ones still open past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import NotFound
from .models import (
    DATA_REQUEST_OUTCOME_MAX, PROVISION_TEXT_MAX, STAFF_EMAIL_MAX, DataRequest, DataRequestKind, DataRequestStatus,
    ProvisionRecord, RequestChannel,
)

DEADLINE = timedelta(days=14)
OPEN = (DataRequestStatus.RECEIVED, DataRequestStatus.IN_PROGRESS)


def deadline_for(requested_at: datetime) -> datetime:
    return requested_at + DEADLINE


async def add(
    session: AsyncSession, *, kind: DataRequestKind, customer_id: int, actor: str, channel: RequestChannel, now: datetime,
    status: DataRequestStatus = DataRequestStatus.DONE, outcome: str | None = None,
) -> DataRequest:
    """A ledger row in the caller's transaction (done at once unless `status` says otherwise)."""
    done = status in (DataRequestStatus.DONE, DataRequestStatus.REFUSED)
    row = DataRequest(
        kind=kind, customer_id=customer_id, status=status, requested_at=now, deadline_at=deadline_for(now),
        completed_at=now if done else None, outcome=outcome[:DATA_REQUEST_OUTCOME_MAX] if outcome else None,
        actor=actor[:STAFF_EMAIL_MAX], channel=channel,
    )
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, request_id: int) -> DataRequest:
    row = await session.get(DataRequest, request_id)
    if row is None:
        raise NotFound("no such data request")
    return row


async def page(
    session: AsyncSession, *, limit: int, before_id: int | None = None, customer_id: int | None = None,
    kind: str | None = None, status: str | None = None,
) -> list[DataRequest]:
    """Newest first; `before_id` pages back."""
    statement = sa.select(DataRequest).order_by(DataRequest.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(DataRequest.id < before_id)
    if customer_id is not None:
        statement = statement.where(DataRequest.customer_id == customer_id)
    if kind is not None:
        statement = statement.where(DataRequest.kind == kind)
    if status is not None:
        statement = statement.where(DataRequest.status == status)
    return list((await session.execute(statement)).scalars())


def is_overdue(row: DataRequest, now: datetime) -> bool:
    """Still open after its deadline (a request answered late stays answered: not overdue)."""
    return row.status in OPEN and row.deadline_at < now


@dataclass(frozen=True)
class Provision:
    """What a provision record says beyond who and when (see ProvisionRecord)."""

    scope: str
    format: str
    recipient: str
    purpose: str
    customer_ids: tuple[int, ...] = ()
    customer_count: int | None = None  # default: len(customer_ids)


def record_provision(session: AsyncSession, provision: Provision, *, actor: str, now: datetime,
                     data_request_id: int | None = None) -> ProvisionRecord:
    row = ProvisionRecord(
        at=now, actor=actor[:STAFF_EMAIL_MAX], scope=provision.scope[:PROVISION_TEXT_MAX], customer_ids=list(provision.customer_ids),
        customer_count=provision.customer_count if provision.customer_count is not None else len(provision.customer_ids),
        format=provision.format, recipient=provision.recipient[:PROVISION_TEXT_MAX], purpose=provision.purpose[:PROVISION_TEXT_MAX],
        data_request_id=data_request_id,
    )
    session.add(row)
    return row


async def provisions(session: AsyncSession, *, limit: int, before_id: int | None = None) -> list[ProvisionRecord]:
    statement = sa.select(ProvisionRecord).order_by(ProvisionRecord.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(ProvisionRecord.id < before_id)
    return list((await session.execute(statement)).scalars())
