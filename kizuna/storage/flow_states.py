"""Flow state rows: read on every event, written on every transition."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import FlowState
from .types import utcnow


async def get(session: AsyncSession, customer_id: int) -> FlowState | None:
    return await session.get(FlowState, customer_id, populate_existing=True)


async def save(session: AsyncSession, customer_id: int, *, flow: str, state: str, data: dict, expires_at: datetime) -> None:
    row = await session.get(FlowState, customer_id)
    now = utcnow()
    if row is None or row.flow != flow:
        if row is not None:
            await session.delete(row)
            await session.flush()
        session.add(FlowState(customer_id=customer_id, flow=flow, state=state, data=data, started_at=now, updated_at=now, expires_at=expires_at))
    else:
        row.state, row.data, row.updated_at, row.expires_at = state, dict(data), now, expires_at
    await session.flush()


async def clear(session: AsyncSession, customer_id: int) -> None:
    await session.execute(sa.delete(FlowState).where(FlowState.customer_id == customer_id))
