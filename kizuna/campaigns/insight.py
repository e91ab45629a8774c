"""LINE's own figures for a campaign (issue 15 §4): opens and clicks as LINE counts them, from the
insight API for the campaign's aggregation unit (`customAggregationUnits`, one per campaign:
campaigns.py names it `kizuna_c{id}`, bot/campaign_sender.py sends with it).

LINE's rules (LINE_FACTS.md, emulator/insight.py): `GET /v2/bot/insight/message/event/aggregation`
takes a unit and a period `from`–`to` (yyyyMMdd, JST, at most 30 days apart); a day's figures are
available from the day after (so a campaign is not asked about on the day it started); a figure
about fewer than 20 people is withheld (null). The console never asks LINE on a page view: a
worker looks every INSIGHT_LOOK and asks LINE about each recent campaign at most once per
REFRESH_EVERY (each look claimed by one worker), keeping the answer in campaign_insights; the
results page reads that row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import campaign_insights
from kizuna.storage.db import transaction
from kizuna.storage.models import CampaignInsight, InsightStatus

log = logging.getLogger("kizuna.campaigns.insight")

JST = timezone(timedelta(hours=9))
REFRESH_EVERY = timedelta(hours=1)  # how old the cached figures may get
FOLLOW_FOR = timedelta(days=30)  # LINE's longest period: a campaign is followed this long after it started
BATCH = 20

# The LINE client's `get_statistics_per_unit(unit, since, until)` (bot/line.py), passed in by the worker.
Fetch = Callable[[str, date, date], Awaitable[dict]]


def period(started_at: datetime, now: datetime) -> tuple[date, date] | None:
    """The JST dates to ask LINE about: from the start's day to yesterday (at most 30 days); None
    on the start's own day (LINE has no figures for today yet)."""
    first = started_at.astimezone(JST).date()
    last = min(now.astimezone(JST).date() - timedelta(days=1), first + timedelta(days=29))
    return (first, last) if last >= first else None


async def refresh_due(sessions: async_sessionmaker[AsyncSession], fetch: Fetch, *, now: datetime) -> int:
    """Ask LINE about the campaigns due a look and keep the answers; the number asked. Each look is
    claimed first (campaign_insights.claim), so N workers ask LINE once per campaign and hour."""
    async with sessions() as session:
        campaigns = await campaign_insights.due(session, now=now, since=now - FOLLOW_FOR, every_before=now - REFRESH_EVERY, limit=BATCH)
    asked = 0
    for campaign, seen in campaigns:
        async with transaction(sessions) as session:
            if not await campaign_insights.claim(session, campaign.id, seen, now=now):
                continue  # another worker has it
        dates = period(campaign.started_at, now)
        status, figures, error = InsightStatus.NOT_READY, None, None
        if dates is not None:
            asked += 1
            try:
                figures, status = await fetch(campaign.aggregation_unit, *dates), InsightStatus.READY
            except Exception as exc:  # LINE refused or is away: say so on the page, ask again later
                log.warning("insight of campaign %s: %r", campaign.id, exc)
                status, error = InsightStatus.FAILED, str(getattr(exc, "status", "") or type(exc).__name__)
        async with transaction(sessions) as session:
            await campaign_insights.store(session, campaign.id, status, figures=figures, error=error, now=now)
    return asked


@dataclass
class LineFigures:
    """What the results page shows of LINE's figures: None where LINE withholds it (under 20 people)."""

    status: str
    fetched_at: datetime
    unique_impressions: int | None = None  # people who opened (saw) the messages
    impressions: int | None = None  # opens counted by LINE, bubbles summed
    unique_clicks: int | None = None  # people who tapped a link
    clicks: int | None = None  # taps counted by LINE
    withheld: bool = False  # some figure is under LINE's privacy threshold


def line_figures(row: CampaignInsight | None) -> LineFigures | None:
    if row is None:
        return None
    answer = LineFigures(status=row.status, fetched_at=row.fetched_at)
    if row.status != InsightStatus.READY or not row.figures:
        return answer
    overview = row.figures.get("overview") or {}
    messages = row.figures.get("messages") or []
    clicks = row.figures.get("clicks") or []
    answer.unique_impressions = overview.get("uniqueImpression")
    answer.unique_clicks = overview.get("uniqueClick")
    answer.impressions = sum(m.get("impression") or 0 for m in messages) if messages else 0
    answer.clicks = sum(c.get("click") or 0 for c in clicks) if clicks else 0
    # LINE gives null (not 0) for a figure about fewer than 20 people; its SDK's to_dict leaves nulls out.
    answer.withheld = answer.unique_impressions is None or answer.unique_clicks is None
    return answer
