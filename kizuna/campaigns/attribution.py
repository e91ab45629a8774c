"""What a campaign achieved (issue 15 §4): taps on its tracked links, and the coupon redemptions and
orders of its recipients within the attribution window (default 7 days from the campaign's start),
beside the same for its control group, so the result is an uplift, not just a count.

Recipients are the customers of the campaign's sent batches; the control group receives nothing and
is measured over the same window. The uplift is the difference of the two groups' purchase rates
(customers with an order in the window / group size) with a 95 % Wald interval — plain and
adequate at campaign sizes; with fewer than 30 in either group no interval is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.storage import campaign_batches
from kizuna.storage.models import (
    BatchStatus, Campaign, CampaignBatch, CampaignRecipient, CouponGrant, GrantStatus, Order, OrderStatus, RecipientStatus,
)

WINDOW = timedelta(days=7)
Z_95 = 1.959964
MIN_GROUP = 30


@dataclass
class Group:
    size: int
    buyers: int  # customers with an order in the window
    orders: int
    revenue: int
    redeemed: int  # coupons redeemed in the window

    @property
    def rate(self) -> float | None:
        return self.buyers / self.size if self.size else None


@dataclass
class Uplift:
    difference: float  # treated rate − control rate
    low: float | None
    high: float | None


@dataclass
class Results:
    clicks: int
    clickers: int
    treated: Group
    control: Group | None
    uplift: Uplift | None


_r, _b = CampaignRecipient.__table__, CampaignBatch.__table__


def _members(campaign_id: int, control: bool) -> sa.Select:
    """The customer ids of the treated recipients (in sent batches) or of the control group."""
    if control:
        return sa.select(_r.c.customer_id).where(_r.c.campaign_id == campaign_id, _r.c.status == RecipientStatus.CONTROL)
    return (sa.select(_r.c.customer_id)
            .join(_b, sa.and_(_b.c.campaign_id == _r.c.campaign_id, _b.c.variant_id == _r.c.variant_id, _b.c.seq == _r.c.batch_seq))
            .where(_r.c.campaign_id == campaign_id, _r.c.status == RecipientStatus.QUEUED, _b.c.status == BatchStatus.SENT))


async def _group(session: AsyncSession, campaign: Campaign, control: bool) -> Group:
    members = _members(campaign.id, control).subquery("members")
    start = campaign.started_at
    end = start + WINDOW
    size = (await session.execute(sa.select(sa.func.count()).select_from(members))).scalar_one()
    o = Order.__table__
    orders, revenue, buyers = (await session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(o.c.total), 0), sa.func.count(sa.distinct(o.c.customer_id)))
        .join(members, members.c.customer_id == o.c.customer_id)
        .where(o.c.status == OrderStatus.COMPLETED, o.c.ordered_at >= start, o.c.ordered_at < end)
    )).one()
    g = CouponGrant.__table__
    redeemed = (await session.execute(
        sa.select(sa.func.count()).join(members, members.c.customer_id == g.c.customer_id)
        .where(g.c.status == GrantStatus.REDEEMED, g.c.redeemed_at >= start, g.c.redeemed_at < end)
    )).scalar_one()
    return Group(size=size, buyers=buyers, orders=orders, revenue=int(revenue), redeemed=redeemed)


def uplift(treated: Group, control: Group) -> Uplift | None:
    if treated.rate is None or control.rate is None:
        return None
    difference = treated.rate - control.rate
    if treated.size < MIN_GROUP or control.size < MIN_GROUP:
        return Uplift(difference, None, None)
    error = math.sqrt(treated.rate * (1 - treated.rate) / treated.size + control.rate * (1 - control.rate) / control.size)
    return Uplift(difference, difference - Z_95 * error, difference + Z_95 * error)


async def results(session: AsyncSession, campaign: Campaign) -> Results:
    clicks, clickers = await campaign_batches.clicks(session, campaign.id)
    if campaign.started_at is None:
        empty = Group(0, 0, 0, 0, 0)
        return Results(clicks, clickers, empty, None, None)
    treated = await _group(session, campaign, control=False)
    control = await _group(session, campaign, control=True) if campaign.holdout_percent else None
    return Results(clicks, clickers, treated, control, uplift(treated, control) if control else None)
