"""The cached LINE insight of campaigns (campaign_insights): which campaigns are due a look, and
storing what LINE answered. campaigns/insight.py decides; this module only reads and writes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import insert_on_conflict
from .models import Campaign, CampaignInsight, InsightStatus


async def due(session: AsyncSession, *, now: datetime, since: datetime, every_before: datetime,
              limit: int) -> list[tuple[Campaign, datetime | None]]:
    """Campaigns with an aggregation unit, started after `since`, whose cached insight is missing or
    older than `every_before`, with the cached row's fetched_at (for `claim`); oldest look first."""
    i = CampaignInsight.__table__
    statement = (
        sa.select(Campaign, i.c.fetched_at).outerjoin(i, i.c.campaign_id == Campaign.id)
        .where(Campaign.aggregation_unit.is_not(None), Campaign.started_at.is_not(None), Campaign.started_at >= since,
               Campaign.started_at <= now, sa.or_(i.c.fetched_at.is_(None), i.c.fetched_at < every_before))
        .order_by(i.c.fetched_at.nulls_first(), Campaign.id).limit(limit)
    )
    return [(campaign, fetched_at) for campaign, fetched_at in (await session.execute(statement)).all()]


async def claim(session: AsyncSession, campaign_id: int, seen: datetime | None, *, now: datetime) -> bool:
    """Take the campaign's look for this worker: one conditional statement, so of N workers that saw
    the same cached row (`seen`: its fetched_at, None when there was none) one asks LINE."""
    table = CampaignInsight.__table__
    if seen is None:
        statement = insert_on_conflict(session, table).values(
            campaign_id=campaign_id, status=InsightStatus.NOT_READY.value, fetched_at=now).on_conflict_do_nothing()
    else:
        statement = sa.update(table).where(table.c.campaign_id == campaign_id, table.c.fetched_at == seen).values(fetched_at=now)
    return ((await session.execute(statement)).rowcount or 0) == 1


async def store(session: AsyncSession, campaign_id: int, status: InsightStatus, *, figures: dict | None, error: str | None,
                now: datetime) -> None:
    """Insert or replace the campaign's cached insight (one statement)."""
    values = {"status": status.value, "figures": figures, "error": (error or None) and error[:300], "fetched_at": now}
    statement = insert_on_conflict(session, CampaignInsight.__table__).values(campaign_id=campaign_id, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["campaign_id"], set_=values))


async def of(session: AsyncSession, campaign_id: int) -> CampaignInsight | None:
    return await session.get(CampaignInsight, campaign_id)
