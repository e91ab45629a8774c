"""The cached LINE insight of campaigns (campaign_insights): which campaigns are due a look, and
storing what LINE answered. campaigns/insight.py decides; this module only reads and writes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import insert_on_conflict
from .models import Campaign, CampaignInsight, InsightStatus


async def due(session: AsyncSession, *, now: datetime, since: datetime, every_before: datetime, limit: int) -> list[Campaign]:
    """Campaigns with an aggregation unit, started after `since`, whose cached insight is missing or
    older than `every_before`; oldest look first."""
    i = CampaignInsight.__table__
    statement = (
        sa.select(Campaign).outerjoin(i, i.c.campaign_id == Campaign.id)
        .where(Campaign.aggregation_unit.is_not(None), Campaign.started_at.is_not(None), Campaign.started_at >= since,
               Campaign.started_at <= now, sa.or_(i.c.fetched_at.is_(None), i.c.fetched_at < every_before))
        .order_by(i.c.fetched_at.nulls_first(), Campaign.id).limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def store(session: AsyncSession, campaign_id: int, status: InsightStatus, *, figures: dict | None, error: str | None,
                now: datetime) -> None:
    """Insert or replace the campaign's cached insight (one statement)."""
    values = {"status": status.value, "figures": figures, "error": (error or None) and error[:300], "fetched_at": now}
    statement = insert_on_conflict(session, CampaignInsight.__table__).values(campaign_id=campaign_id, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["campaign_id"], set_=values))


async def of(session: AsyncSession, campaign_id: int) -> CampaignInsight | None:
    return await session.get(CampaignInsight, campaign_id)
