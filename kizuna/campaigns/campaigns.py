"""Campaigns (issue 15 §1): a marketer's push to a segment, scheduled, started once, sent in batches.

States: draft → scheduled → running → completed, with paused and cancelled beside them. The
scheduler (`start_due`, run by every worker) claims a due campaign once, holds it while the shop's
quiet hours last (21:00–09:00 in the shop's zone unless the campaign switched them off: held, not
dropped), checks LINE's monthly quota, and snapshots the audience (storage/campaign_batches.py)
with opt-outs, blocks and the frequency cap applied in SQL. Senders (bot/campaign_sender.py) then
take the batches. Pause and cancel are one UPDATE of the campaign's status: every sender's next
claim reads it, so they take effect within a claim (well under a second) across all workers;
requests already in flight finish (LINE cannot take them back).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.storage import audit, campaign_batches, campaign_narrowcasts, coupons, deliveries, faq
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.models import (
    CAMPAIGN_NAME_MAX, BatchStatus, Campaign, CampaignBatch, CampaignDelivery, CampaignRecipient, CampaignStatus, CampaignVariant,
    Customer, DeliveryMethod, RecipientStatus,
)

from . import links as tracked_links
from . import messages as campaign_messages
from . import recurrence as recurrence_rules
from . import segments

QUIET_START, QUIET_END = time(21, 0), time(9, 0)
FREQUENCY_CAP = 2  # marketing pushes per customer per 7 days (campaign_batches.CAP_WINDOW)
MAX_VARIANTS = 4
MAX_HOLDOUT_PERCENT = 50
LABELS = "ABCD"
NARROWCAST_THRESHOLD = 100_000  # `auto` delivery: queued recipients from which narrowcast is used (a setting)
NARROWCAST_MIN_AUDIENCE = 50  # LINE fails a narrowcast to an audience smaller than this (error code 4)

# How many pushes LINE's monthly quota has left (None: no limit); from the LINE client.
QuotaLeft = Callable[[], Awaitable[int | None]]


@dataclass(frozen=True)
class VariantIn:
    messages: list[dict]
    percent: int


def quiet_until(now: datetime, zone: str) -> datetime | None:
    """When the quiet hours end, if `now` is inside them (else None)."""
    local = now.astimezone(ZoneInfo(zone))
    if QUIET_END <= local.time() < QUIET_START:
        return None
    day = local.date() if local.time() < QUIET_END else local.date() + timedelta(days=1)
    return datetime.combine(day, QUIET_END, tzinfo=ZoneInfo(zone))


def _check_variants(variants: list[VariantIn]) -> list[VariantIn]:
    if not 1 <= len(variants) <= MAX_VARIANTS:
        raise Invalid("variants", f"must be 1 to {MAX_VARIANTS} variants")
    for index, variant in enumerate(variants):
        campaign_messages.check(variant.messages, f"variants[{index}].messages" if len(variants) > 1 else "messages")
        if not 1 <= variant.percent <= 100:
            raise Invalid(f"variants[{index}].percent", "must be 1 to 100")
    if sum(variant.percent for variant in variants) != 100:
        raise Invalid("variants", "the variants' percents must add up to 100")
    return variants


async def create(
    session: AsyncSession, *, name: Any, segment_id: int | None, rule: Any, variants: list[VariantIn], send_at: datetime | None,
    schedule: bool = True, quiet_hours: bool = True, frequency_cap: bool = True, holdout_percent: int = 0,
    track_links: bool = True, coupon_id: int | None = None, delivery: Any = CampaignDelivery.AUTO, recurrence: Any = None,
    now: datetime, actor: audit.Actor | None = None,
) -> Campaign:
    """A campaign, scheduled (or a draft with `schedule=False`). Exactly one of `segment_id` and
    `rule`; an inline rule is checked now and kept as it was (later edits of a segment do change
    a scheduled campaign's audience: it is evaluated when the campaign starts).

    `delivery` narrowcast sends one identical message to a LINE audience: refused for content that
    differs per recipient (names, tracked links, a coupon). `recurrence` (a cron rule in the
    shop's zone) makes it a template whose every occurrence is its own run (`start_due`)."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > CAMPAIGN_NAME_MAX:
        raise Invalid("name", f"must be text of 1 to {CAMPAIGN_NAME_MAX} characters")
    if (segment_id is None) == (rule is None):
        raise Invalid("segment_id", "give either segment_id or rule")
    if segment_id is not None:
        try:
            await segments.get(session, segment_id)
        except NotFound:
            raise Invalid("segment_id", "no such segment") from None
    else:
        segments.check(rule)
    _check_variants(variants)
    if coupon_id is not None:
        coupon = await coupons.get_coupon(session, coupon_id)
        if coupon is None or not coupon.active:
            raise Invalid("coupon_id", "no such active coupon")
        if any(len(variant.messages) >= campaign_messages.MAX_MESSAGES for variant in variants):
            raise Invalid("messages", f"with a coupon, at most {campaign_messages.MAX_MESSAGES - 1} messages (the coupon card is the last)")
    if not 0 <= holdout_percent <= MAX_HOLDOUT_PERCENT:
        raise Invalid("holdout_percent", f"must be 0 to {MAX_HOLDOUT_PERCENT}")
    if send_at is not None:
        if send_at.tzinfo is None:
            raise Invalid("send_at", "must carry a UTC offset, e.g. 2026-12-24T10:00:00+09:00")
        if send_at < now - timedelta(minutes=1):
            raise Invalid("send_at", "is in the past")
    if delivery not in set(CampaignDelivery):
        raise Invalid("delivery", "must be auto, multicast or narrowcast")
    methods = []
    for index, variant in enumerate(variants):
        links = tracked_links.find(variant.messages) if track_links else []
        if len(links) > tracked_links.MAX_LINKS:
            raise Invalid(f"variants[{index}].messages", f"at most {tracked_links.MAX_LINKS} different links can be tracked")
        # Tracked links and coupon codes differ per recipient, like names: such content is pushed one by one.
        personal = bool(links) or coupon_id is not None or campaign_messages.personalised(variant.messages)
        methods.append((links, DeliveryMethod.PUSH if personal else DeliveryMethod.MULTICAST))
    if delivery == CampaignDelivery.NARROWCAST and any(method == DeliveryMethod.PUSH for _, method in methods):
        raise Invalid("delivery", "narrowcast sends the same messages to everyone: not with personalisation ({name}), "
                                  "tracked links (switch track_links off) or a coupon")
    if recurrence is not None:
        if send_at is not None:
            raise Invalid("send_at", "a recurring campaign runs at its rule's times: leave send_at empty")
        zone = await faq.shop_timezone(session)
        recurrence = recurrence_rules.check(recurrence, zone=zone, now=now)
        send_at = recurrence_rules.next_run(recurrence, after=now, zone=zone)
    campaign = Campaign(
        name=name.strip(), segment_id=segment_id, rule=rule, status=CampaignStatus.SCHEDULED if schedule else CampaignStatus.DRAFT,
        send_at=send_at, quiet_hours=quiet_hours, frequency_cap=frequency_cap, holdout_percent=holdout_percent,
        track_links=track_links, coupon_id=coupon_id, delivery=delivery, recurrence=recurrence,
        created_by=actor.label[:100] if actor else None, created_at=now, updated_at=now,
    )
    session.add(campaign)
    await session.flush()
    for label, variant, (links, method) in zip(LABELS, variants, methods):
        session.add(CampaignVariant(campaign_id=campaign.id, label=label, percent=variant.percent, messages=variant.messages,
                                    method=method, links=links))
    campaign.aggregation_unit = f"kizuna_c{campaign.id}"
    await session.flush()
    audit.record_by(session, actor, audit.Action.CAMPAIGN_CREATED, target=f"campaign:{campaign.id} {campaign.name}")
    return campaign


async def get(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no such campaign")
    return campaign


async def variants_of(session: AsyncSession, campaign_id: int) -> list[CampaignVariant]:
    rows = await session.execute(sa.select(CampaignVariant).where(CampaignVariant.campaign_id == campaign_id).order_by(CampaignVariant.label))
    return list(rows.scalars())


async def list_page(session: AsyncSession, *, limit: int, after: int | None) -> list[Campaign]:
    statement = sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if after is not None:
        statement = statement.where(Campaign.id < after)
    return list((await session.execute(statement)).scalars())


# -- pause, resume, cancel --------------------------------------------------------------------------

_MOVES = {
    "schedule": ({CampaignStatus.DRAFT}, None),
    "pause": ({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING}, CampaignStatus.PAUSED),
    "resume": ({CampaignStatus.PAUSED}, None),
    "cancel": ({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED},
               CampaignStatus.CANCELLED),
}
_AUDIT = {"pause": audit.Action.CAMPAIGN_PAUSED, "resume": audit.Action.CAMPAIGN_RESUMED, "cancel": audit.Action.CAMPAIGN_CANCELLED}


async def move(session: AsyncSession, campaign_id: int, action: str, *, now: datetime, actor: audit.Actor | None = None) -> Campaign:
    """Pause, resume, cancel or schedule: one conditional UPDATE (a sender's next claim sees it)."""
    allowed, target = _MOVES[action]
    campaign = await get(session, campaign_id)
    if campaign.status not in allowed:
        raise Conflict("campaign_state", f"a {campaign.status} campaign cannot be {action}d", campaign_status=campaign.status)
    if action in ("pause", "cancel") and campaign.narrowcast_sent_at is not None:
        raise Conflict("campaign_state", "LINE is delivering this campaign's narrowcast: it can no longer be paused or cancelled",
                       campaign_status=campaign.status)
    if target is None:  # schedule, resume: back to running if the audience is already snapshotted
        target = CampaignStatus.RUNNING if campaign.started_at is not None else CampaignStatus.SCHEDULED
    values: dict[str, Any] = {"status": target, "updated_at": now, "note": None if action == "resume" else Campaign.note}
    if campaign.recurrence and target == CampaignStatus.SCHEDULED:
        # Occurrences missed while paused (or while a draft) are skipped: the next run is the rule's next time.
        values["send_at"] = recurrence_rules.next_run(campaign.recurrence, after=now, zone=await faq.shop_timezone(session))
    # The narrowcast fence: a sender sets narrowcast_sent_at with this same row locked, so a pause
    # either lands before it (nothing is sent) or is refused (LINE is delivering).
    result = await session.execute(
        sa.update(Campaign).where(Campaign.id == campaign_id, Campaign.status == campaign.status, Campaign.narrowcast_sent_at.is_(None))
        .values(**values)
    )
    if result.rowcount != 1:
        raise Conflict("campaign_state", "the campaign changed meanwhile; look again")
    if action == "cancel" and campaign.recurrence:
        # Stopping a recurrence also stops its run that is scheduled but not started yet.
        await session.execute(sa.update(Campaign).where(Campaign.parent_id == campaign_id, Campaign.status == CampaignStatus.SCHEDULED)
                              .values(status=CampaignStatus.CANCELLED, updated_at=now))
    await session.refresh(campaign)
    if action in _AUDIT:
        audit.record_by(session, actor, _AUDIT[action], target=f"campaign:{campaign.id} {campaign.name}")
    return campaign


# -- a test send --------------------------------------------------------------------------------

TEST_RECIPIENTS_MAX = 10


async def test_send(session: AsyncSession, campaign_id: int, line_user_ids: list[str], *, now: datetime,
                    actor: audit.Actor | None = None) -> list[int]:
    """Each variant's messages to a few of the shop's own LINE accounts (staff who befriended the
    account), as they will look (names filled in; links untracked; no coupon is granted), through
    the outbox. Returns the deliveries to send after commit. Not counted in the campaign's results."""
    campaign = await get(session, campaign_id)
    if not 1 <= len(line_user_ids) <= TEST_RECIPIENTS_MAX:
        raise Invalid("line_user_ids", f"give 1 to {TEST_RECIPIENTS_MAX} LINE user ids")
    found = {c.line_user_id: c for c in (await session.execute(
        sa.select(Customer).where(Customer.line_user_id.in_(line_user_ids)))).scalars()}
    for index, line_user_id in enumerate(line_user_ids):
        customer = found.get(line_user_id)
        if customer is None or not customer.followed or customer.blocked:
            raise Invalid(f"line_user_ids[{index}]", "not a friend of the account (add the account on LINE first)")
    sent = []
    for variant in await variants_of(session, campaign.id):
        for line_user_id in line_user_ids:
            customer = found[line_user_id]
            body = campaign_messages.render(variant.messages, display_name=customer.display_name, full_name=customer.full_name)
            delivery = await deliveries.create(
                session, customer_id=customer.id, messages=body, sender_type="campaign", sender_id=f"test:{campaign.id}",
                retry_key=deliveries.retry_key_for("campaign-test", campaign.id, variant.id, customer.id, now.isoformat()))
            sent.append(delivery.id)
    audit.record_by(session, actor, audit.Action.CAMPAIGN_TEST_SENT, target=f"campaign:{campaign.id} {campaign.name}",
                    recipients=len(line_user_ids))
    return sent


# -- the scheduler --------------------------------------------------------------------------------


async def _audience(session: AsyncSession, campaign: Campaign, now: datetime) -> sa.Select:
    rule = campaign.rule if campaign.segment_id is None else (await segments.get(session, campaign.segment_id)).rule
    return await segments.audience(session, rule, now=now)


async def start_due(session: AsyncSession, *, now: datetime, quota_left: QuotaLeft | None = None,
                    narrowcast_threshold: int = NARROWCAST_THRESHOLD) -> Campaign | None:
    """Start one due campaign, if any (claimed with SKIP LOCKED: N workers start it once). Within
    quiet hours it is held until they end; over LINE's monthly quota it is paused with a note (and
    its snapshot rolled back: nothing is half-started). A due recurring campaign instead starts a
    run of itself (a child campaign, scheduled now) and moves on to its next time. The caller commits."""
    due = (sa.select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED,
                                     sa.or_(Campaign.send_at.is_(None), Campaign.send_at <= now))
           .order_by(Campaign.send_at.is_(None).desc(), Campaign.send_at, Campaign.id).limit(1)
           .with_for_update(skip_locked=True))
    campaign = (await session.execute(due)).scalars().first()
    if campaign is None:
        return None
    zone = await faq.shop_timezone(session)
    if campaign.recurrence:
        return await _start_run(session, campaign, now=now, zone=zone)
    held_until = quiet_until(now, zone) if campaign.quiet_hours else None
    if held_until is not None:
        campaign.send_at = held_until
        campaign.note = f"配信停止時間帯（21:00〜9:00）のため {held_until:%m/%d %H:%M} に開始します"
        campaign.updated_at = now
        return campaign
    variants = await variants_of(session, campaign.id)
    savepoint = await session.begin_nested()
    counts = await campaign_batches.snapshot(session, campaign, variants, await _audience(session, campaign, now), now=now,
                                             cap=FREQUENCY_CAP if campaign.frequency_cap else None)
    queued = counts.get(RecipientStatus.QUEUED, 0)
    left = await quota_left() if quota_left is not None and queued else None
    if left is not None and queued > left:
        await savepoint.rollback()
        campaign.status = CampaignStatus.PAUSED
        campaign.note = f"LINE の月間送信上限を超えるため開始できません（必要 {queued:,} 通、残り {left:,} 通）"
        campaign.updated_at = now
        return campaign
    await savepoint.commit()
    if queued:
        await _choose_narrowcast(session, campaign, variants, queued, now=now, threshold=narrowcast_threshold)
    campaign.status = CampaignStatus.RUNNING if queued else CampaignStatus.COMPLETED
    campaign.started_at = now
    campaign.completed_at = None if queued else now
    campaign.audience = counts
    campaign.note = campaign.note if queued and campaign.delivery == CampaignDelivery.NARROWCAST and not campaign.by_narrowcast else None
    campaign.updated_at = now
    return campaign


async def _choose_narrowcast(session: AsyncSession, campaign: Campaign, variants: list[CampaignVariant], queued: int, *,
                             now: datetime, threshold: int) -> None:
    """After the snapshot (opt-outs, blocks, caps and the control group applied): send it by
    narrowcast when the campaign asks for it (or `auto` and at least `threshold` are queued), the
    content is identical for all, and every variant reaches LINE's smallest narrowcast audience.
    Otherwise the batches go by multicast as usual (with a note when narrowcast was asked for)."""
    wanted = campaign.delivery == CampaignDelivery.NARROWCAST or (campaign.delivery == CampaignDelivery.AUTO and queued >= threshold)
    if not wanted or any(variant.method != DeliveryMethod.MULTICAST for variant in variants):
        return
    per_variant = await campaign_batches.queued_per_variant(session, campaign.id)
    smallest = min(per_variant.get(variant.id, 0) for variant in variants)
    if smallest < NARROWCAST_MIN_AUDIENCE:
        campaign.note = (f"LINE のオーディエンス配信は {NARROWCAST_MIN_AUDIENCE} 人以上が必要なため、"
                         f"マルチキャストで送ります（最少のパターンで {smallest} 人）")
        return
    campaign.by_narrowcast = True
    await campaign_narrowcasts.create_for(session, campaign.id, [v.id for v in variants if per_variant.get(v.id)], now=now)


async def _start_run(session: AsyncSession, parent: Campaign, *, now: datetime, zone: str) -> Campaign:
    """The due occurrence of a recurring campaign as its own run: a copy of the campaign (its
    variants, switches and audience) scheduled at the occurrence, so quiet hours, quota and the
    frequency cap apply to each run; then the parent moves to its next time. Unique on (parent,
    occurrence) besides the row lock: a run is started once whatever the workers and restarts."""
    occurrence = parent.send_at or now
    run = Campaign(
        name=f"{parent.name[:CAMPAIGN_NAME_MAX - 16]} {recurrence_rules.label(occurrence, zone)}", segment_id=parent.segment_id,
        rule=parent.rule, status=CampaignStatus.SCHEDULED, send_at=occurrence, quiet_hours=parent.quiet_hours,
        frequency_cap=parent.frequency_cap, holdout_percent=parent.holdout_percent, track_links=parent.track_links,
        coupon_id=parent.coupon_id, delivery=parent.delivery, parent_id=parent.id, occurrence_at=occurrence,
        created_by=parent.created_by, created_at=now, updated_at=now,
    )
    exists = await session.execute(sa.select(Campaign.id).where(Campaign.parent_id == parent.id, Campaign.occurrence_at == occurrence))
    if exists.first() is None:
        session.add(run)
        await session.flush()
        run.aggregation_unit = f"kizuna_c{run.id}"
        for variant in await variants_of(session, parent.id):
            session.add(CampaignVariant(campaign_id=run.id, label=variant.label, percent=variant.percent, messages=variant.messages,
                                        method=variant.method, links=variant.links))
    # Missed occurrences (workers down, a long pause) collapse into this one run.
    parent.send_at = recurrence_rules.next_run(parent.recurrence, after=max(now, occurrence), zone=zone)
    parent.note = None
    parent.updated_at = now
    return parent


async def runs_of(session: AsyncSession, campaign_id: int, *, limit: int = 50) -> list[Campaign]:
    """A recurring campaign's runs, newest first."""
    rows = await session.execute(sa.select(Campaign).where(Campaign.parent_id == campaign_id)
                                 .order_by(Campaign.occurrence_at.desc()).limit(limit))
    return list(rows.scalars())


# -- results ------------------------------------------------------------------------------------


@dataclass
class Stats:
    targeted: int  # recipients in the snapshot's batches
    sent: int
    failed: int
    undetermined: int
    pending: int
    control: int
    excluded: dict[str, int]  # left out: blocked, opted_out, capped, not_on_line
    duplicates_avoided: int  # batches LINE answered 409 for: an earlier attempt had been accepted


async def stats(session: AsyncSession, campaign_id: int) -> Stats:
    await get(session, campaign_id)
    b, r = CampaignBatch.__table__, CampaignRecipient.__table__
    by_batch = {status: (count, recipients) for status, count, recipients in await session.execute(
        sa.select(b.c.status, sa.func.count(), sa.func.coalesce(sa.func.sum(b.c.recipients), 0))
        .where(b.c.campaign_id == campaign_id).group_by(b.c.status))}
    duplicates = (await session.execute(
        sa.select(sa.func.count()).where(b.c.campaign_id == campaign_id, b.c.duplicate))).scalar_one()
    # Recipients of a batch who were left out at send time (blocked or opted out meanwhile) or
    # refused by LINE one by one (a push), by the status of their batch.
    changed = {(batch_status, status): count for batch_status, status, count in await session.execute(
        sa.select(b.c.status, r.c.status, sa.func.count())
        .join(b, sa.and_(b.c.campaign_id == r.c.campaign_id, b.c.variant_id == r.c.variant_id, b.c.seq == r.c.batch_seq))
        .where(r.c.campaign_id == campaign_id, r.c.batch_seq.is_not(None), r.c.status != RecipientStatus.QUEUED)
        .group_by(b.c.status, r.c.status))}
    snapshot = await campaign_batches.counts(session, campaign_id)

    def recipients(status: BatchStatus) -> int:
        total = by_batch.get(status, (0, 0))[1]
        return total - sum(count for (batch_status, _), count in changed.items() if batch_status == status)

    excluded = {status: snapshot.get(status, 0) for status in
                (RecipientStatus.BLOCKED, RecipientStatus.OPTED_OUT, RecipientStatus.CAPPED, RecipientStatus.NOT_ON_LINE)}
    return Stats(
        targeted=sum(recipients for _, recipients in by_batch.values()),
        sent=recipients(BatchStatus.SENT),
        failed=recipients(BatchStatus.FAILED) + snapshot.get(RecipientStatus.FAILED, 0),
        undetermined=recipients(BatchStatus.UNDETERMINED),
        pending=recipients(BatchStatus.PENDING) + recipients(BatchStatus.SENDING),
        control=snapshot.get(RecipientStatus.CONTROL, 0),
        excluded={str(status): count for status, count in excluded.items()},
        duplicates_avoided=duplicates,
    )
