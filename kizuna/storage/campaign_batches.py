"""Campaign audiences and batches: the set-based half of the delivery engine.

The audience is snapshotted into `campaign_recipients` with one INSERT … SELECT (never loaded
into Python): every member gets a status (queued, control, or why they are left out), a variant
and, when queued, a batch number. Batches are then one row per request to LINE, each with its
retry key stored before the first attempt. Senders claim batches with one conditional UPDATE
(SKIP LOCKED on PostgreSQL), and finish them with one statement per group: a queued recipient's
delivery status is its batch's, so a multicast of 500 updates one row, not 500.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import automations
from .db import any_of
from .models import (
    AutomationTrigger,
    BatchStatus, Campaign, CampaignBatch, CampaignClick, CampaignRecipient, CampaignStatus, CampaignVariant, Customer, Direction,
    Interaction,
    RecipientStatus,
)

# Namespace of campaign retry keys: uuid5(namespace, "campaign:variant:seq"), and a push's key
# uuid5(namespace, "<batch key>:<customer id>") — derived, so a retry after any crash reuses them.
RETRY_KEY_NAMESPACE = uuid.UUID("0b5c2d9e-6a51-4b8f-8f7e-4d0c3c1e2a77")
MULTICAST_SIZE = 500  # LINE's most recipients per multicast
PUSH_BATCH_SIZE = 100  # pushes claimed together (each is its own request with its own key)
CAP_WINDOW = timedelta(days=7)

_recipients = CampaignRecipient.__table__
_batches = CampaignBatch.__table__
_campaigns = Campaign.__table__
_customers = Customer.__table__


def batch_key(campaign_id: int, variant_id: int, seq: int) -> str:
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{campaign_id}:{variant_id}:{seq}"))


def push_key(batch_retry_key: str, customer_id: int) -> str:
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{batch_retry_key}:{customer_id}"))


# -- the snapshot --------------------------------------------------------------------------------


def _bucket(campaign_id: int) -> sa.ColumnElement:
    """0–9999, fixed per (campaign, customer) and spread evenly (Knuth's multiplicative hash):
    the last two digits pick the control group, the first two the variant."""
    return (sa.cast(_customers.c.id, sa.BigInteger) * 2654435761 + campaign_id * 40503) % 10000


def _capped(now: datetime, cap: int) -> sa.Select:
    """Customers who already got `cap` marketing pushes in the last 7 days (sent batches of
    campaigns started in that window)."""
    r, b, c = _recipients.alias("r"), _batches.alias("b"), _campaigns.alias("c")
    return (
        sa.select(r.c.customer_id)
        .join(b, sa.and_(b.c.campaign_id == r.c.campaign_id, b.c.variant_id == r.c.variant_id, b.c.seq == r.c.batch_seq))
        .join(c, c.c.id == r.c.campaign_id)
        .where(c.c.started_at >= now - CAP_WINDOW, b.c.status == BatchStatus.SENT, r.c.status == RecipientStatus.QUEUED)
        .group_by(r.c.customer_id)
        .having(sa.func.count() >= cap)
    )


def _left_out(now: datetime, cap: int | None) -> list[tuple[sa.ColumnElement, RecipientStatus]]:
    """Why a customer of the audience is left out, in order (the first that holds wins): the
    snapshot's CASE, shared with `estimate` so the editor's figure is the snapshot's rule."""
    # A customer who asked to stop the use of their data (flows/data_rights.py) counts as opted out.
    opted_out = sa.or_(sa.and_(sa.not_(_customers.c.marketing_opt_in), _customers.c.marketing_consent_changed_at.is_not(None)),
                       _customers.c.processing_stopped_at.is_not(None))
    whens = [(_customers.c.line_user_id.is_(None), RecipientStatus.NOT_ON_LINE),
             (sa.or_(_customers.c.blocked, sa.not_(_customers.c.followed)), RecipientStatus.BLOCKED),
             (opted_out, RecipientStatus.OPTED_OUT)]
    if cap is not None:
        capped = _capped(now, cap).subquery("capped")
        whens.append((_customers.c.id.in_(sa.select(capped.c.customer_id)), RecipientStatus.CAPPED))
    return whens


async def estimate(session: AsyncSession, audience: sa.Select, *, now: datetime, cap: int | None) -> dict[str, int]:
    """What a snapshot taken now would leave: counts per status (queued, blocked, opted_out,
    capped, not_on_line), by the snapshot's own CASE, in one read-only statement. The control
    group is not in it: which customers fall in it depends on the campaign's id."""
    ids = audience.subquery("audience")
    status = sa.case(*_left_out(now, cap), else_=sa.literal(RecipientStatus.QUEUED.value))
    members = sa.select(status.label("status")).select_from(_customers).join(ids, ids.c.id == _customers.c.id).subquery("members")
    rows = await session.execute(sa.select(members.c.status, sa.func.count()).group_by(members.c.status))
    return {str(key): count for key, count in rows}


async def snapshot(
    session: AsyncSession, campaign: Campaign, variants: Sequence[CampaignVariant], audience: sa.Select, *,
    now: datetime, cap: int | None,
) -> dict[str, int]:
    """Write the campaign's recipients and batches; returns the counts per status."""
    ids = audience.subquery("audience")
    bucket = _bucket(campaign.id)
    whens = _left_out(now, cap)
    if campaign.holdout_percent:
        whens.append((bucket % 100 < campaign.holdout_percent, RecipientStatus.CONTROL))
    status = sa.case(*whens, else_=sa.literal(RecipientStatus.QUEUED.value))
    variant_at, upper = [], 0
    for variant in variants:
        upper += variant.percent
        variant_at.append(((bucket // 100) % 100 < upper, variant.id))
    variant_id = sa.case(*variant_at, else_=variants[-1].id) if len(variants) > 1 else sa.literal(variants[0].id)
    members = (
        sa.select(_customers.c.id.label("customer_id"), _customers.c.line_user_id, status.label("status"),
                  variant_id.label("variant_id"))
        .join(ids, ids.c.id == _customers.c.id)
        .subquery("members")
    )
    size_by_variant = sa.case(*[(members.c.variant_id == v.id, _size(v)) for v in variants], else_=MULTICAST_SIZE)
    position = sa.func.row_number().over(partition_by=(members.c.status, members.c.variant_id), order_by=members.c.customer_id)
    queued = members.c.status == RecipientStatus.QUEUED
    rows = sa.select(
        sa.literal(campaign.id), members.c.customer_id,
        sa.case((members.c.status.in_([RecipientStatus.QUEUED, RecipientStatus.CONTROL]), members.c.variant_id), else_=None),
        sa.case((queued, (position - 1) // size_by_variant), else_=None),
        members.c.status, members.c.line_user_id,
    )
    await session.execute(
        _recipients.insert().from_select(["campaign_id", "customer_id", "variant_id", "batch_seq", "status", "line_user_id"], rows)
    )
    groups = (await session.execute(
        sa.select(_recipients.c.variant_id, _recipients.c.batch_seq, sa.func.count())
        .where(_recipients.c.campaign_id == campaign.id, _recipients.c.status == RecipientStatus.QUEUED)
        .group_by(_recipients.c.variant_id, _recipients.c.batch_seq)
    )).all()
    if session.bind.dialect.name == "postgresql":
        # Fresh statistics for the senders' first plans (the table may have just grown by a million).
        await session.execute(sa.text("ANALYZE campaign_recipients"))
    if groups:
        await session.execute(_batches.insert(), [
            {"campaign_id": campaign.id, "variant_id": variant, "seq": seq, "recipients": count,
             "retry_key": batch_key(campaign.id, variant, seq), "status": BatchStatus.PENDING}
            for variant, seq, count in groups
        ])
    return await counts(session, campaign.id)


def _size(variant: CampaignVariant) -> int:
    return MULTICAST_SIZE if variant.method == "multicast" else PUSH_BATCH_SIZE


async def queued_per_variant(session: AsyncSession, campaign_id: int) -> dict[int, int]:
    """Recipients in the snapshot's batches, by variant id."""
    rows = await session.execute(
        sa.select(_batches.c.variant_id, sa.func.sum(_batches.c.recipients)).where(_batches.c.campaign_id == campaign_id)
        .group_by(_batches.c.variant_id))
    return {variant_id: int(total) for variant_id, total in rows}


async def counts(session: AsyncSession, campaign_id: int) -> dict[str, int]:
    rows = await session.execute(
        sa.select(_recipients.c.status, sa.func.count()).where(_recipients.c.campaign_id == campaign_id).group_by(_recipients.c.status)
    )
    return {status: count for status, count in rows}


# -- senders -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedBatch:
    id: int
    campaign_id: int
    variant_id: int
    seq: int
    retry_key: str
    attempts: int
    first_attempt_at: datetime


@dataclass
class Audience:
    """Who a claimed batch goes to, in customer order: their ids and LINE user ids, and (for
    personalised content only) their names by customer id."""

    customer_ids: list[int]
    line_user_ids: list[str]
    names: dict[int, tuple[str | None, str | None]]  # customer id -> (display name, full name)


async def claim(session: AsyncSession, *, now: datetime, limit: int, stale_before: datetime, quiet: bool) -> list[ClaimedBatch]:
    """Take up to `limit` batches of running campaigns (pending ones, or ones whose sender died:
    claimed before `stale_before`). While `quiet` (the shop's quiet hours), only campaigns that
    switched quiet hours off are served."""
    b, c = _batches.alias("b"), _campaigns.alias("c")
    due = (
        sa.select(b.c.id).join(c, c.c.id == b.c.campaign_id)
        .where(c.c.status == CampaignStatus.RUNNING, sa.not_(c.c.by_narrowcast),  # those go by narrowcast (campaign_narrowcasts)
               sa.or_(b.c.status == BatchStatus.PENDING,
                      sa.and_(b.c.status == BatchStatus.SENDING, b.c.claimed_at < stale_before)))
        .order_by(b.c.id).limit(limit)
        .with_for_update(of=b, skip_locked=True)
    )
    if quiet:
        due = due.where(sa.not_(c.c.quiet_hours))
    result = await session.execute(
        _batches.update()
        .where(_batches.c.id.in_(due.scalar_subquery()))
        .values(status=BatchStatus.SENDING, claimed_at=now, attempts=_batches.c.attempts + 1,
                first_attempt_at=sa.func.coalesce(_batches.c.first_attempt_at, now))
        .returning(_batches.c.id, _batches.c.campaign_id, _batches.c.variant_id, _batches.c.seq, _batches.c.retry_key,
                   _batches.c.attempts, _batches.c.first_attempt_at)
    )
    return sorted((ClaimedBatch(*row) for row in result), key=lambda batch: batch.id)


async def recipients(session: AsyncSession, batches: Sequence[ClaimedBatch], *, named: set[int] = frozenset()) -> dict[int, Audience]:
    """The queued recipients of each claimed batch (by batch id) who may still receive it: a
    customer who blocked the account or opted out since the snapshot is marked so and left out.
    `named`: the variants whose content is personalised, for which the names are read too.

    One statement per (campaign, variant), one row per batch with its members as arrays (the
    recipients' LINE ids were copied at the snapshot; their customers are looked up only for a
    block or an opt-out since): the Python per recipient was half a sender's time."""
    if not batches:
        return {}
    r, c = _recipients, _customers
    blocked = sa.exists().where(c.c.id == r.c.customer_id, sa.or_(c.c.blocked, sa.not_(c.c.followed)))
    opted_out = sa.exists().where(c.c.id == r.c.customer_id, sa.or_(
        sa.and_(sa.not_(c.c.marketing_opt_in), c.c.marketing_consent_changed_at.is_not(None)),
        c.c.processing_stopped_at.is_not(None)))  # stopped use (flows/data_rights.py): as opted out
    why = sa.case((blocked, 1), (opted_out, 2), else_=0)
    by_seq = {(batch.campaign_id, batch.variant_id, batch.seq): batch.id for batch in batches}
    out: dict[int, Audience] = {batch.id: Audience([], [], {}) for batch in batches}
    left_out: list[dict] = []
    for (campaign_id, variant_id), seqs in _by_variant(batches).items():
        rows = await session.execute(
            sa.select(r.c.batch_seq, _array(session, r.c.customer_id), _array(session, r.c.line_user_id), _array(session, why))
            .where(r.c.campaign_id == campaign_id, r.c.variant_id == variant_id, any_of(session, r.c.batch_seq, seqs),
                   r.c.status == RecipientStatus.QUEUED)
            .group_by(r.c.batch_seq))
        for seq, customer_ids, line_user_ids, whys in rows:
            audience = out[by_seq[(campaign_id, variant_id, seq)]]
            for customer_id, line_user_id, reason in sorted(zip(_list(customer_ids), _list(line_user_ids), _list(whys))):
                if reason == 0:
                    audience.customer_ids.append(customer_id)
                    audience.line_user_ids.append(line_user_id)
                else:
                    status, text = _LEFT_OUT_AT_SEND[reason]
                    left_out.append({"c": campaign_id, "cu": customer_id, "s": status, "why": text})
    wanted = [customer_id for batch in batches if batch.variant_id in named for customer_id in out[batch.id].customer_ids]
    if wanted:
        names = {row.id: (row.display_name, row.full_name) for row in await session.execute(
            sa.select(c.c.id, c.c.display_name, c.c.full_name).where(any_of(session, c.c.id, wanted)))}
        for batch in batches:
            if batch.variant_id in named:
                out[batch.id].names = {customer_id: names[customer_id] for customer_id in out[batch.id].customer_ids}
    if left_out:
        await mark_recipients(session, left_out)
    return out


_LEFT_OUT_AT_SEND = {1: (RecipientStatus.BLOCKED, "blocked the account before the send"),
                     2: (RecipientStatus.OPTED_OUT, "opted out before the send")}


def _array(session: AsyncSession, column: Any) -> Any:
    """The group's values as one array (PostgreSQL) or one JSON array (SQLite): see `_list`."""
    if session.bind.dialect.name == "postgresql":
        return sa.func.array_agg(column)
    return sa.func.json_group_array(column)


def _list(value: Any) -> list:
    return json.loads(value) if isinstance(value, str) else list(value)


def _by_variant(batches: Sequence[ClaimedBatch]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for batch in batches:
        groups.setdefault((batch.campaign_id, batch.variant_id), []).append(batch.seq)
    return groups


async def mark_recipients(session: AsyncSession, changes: list[dict]) -> None:
    """Per-recipient outcomes: dicts of c (campaign id), cu (customer id), s (status), why (reason)."""
    await session.execute(
        _recipients.update()
        .where(_recipients.c.campaign_id == sa.bindparam("c"), _recipients.c.customer_id == sa.bindparam("cu"))
        .values(status=sa.bindparam("s"), reason=sa.bindparam("why")),
        changes,
    )


@dataclass(frozen=True)
class Outcome:
    batch: ClaimedBatch
    status: BatchStatus  # PENDING: not sent yet, try again (same key)
    request_id: str | None = None
    duplicate: bool = False
    error: str | None = None


def _still_claimed() -> sa.Update:
    """An UPDATE of each row's batch (`batch_id`) only while its claim is the one this sender made
    (`attempt`): a batch someone else took over meanwhile is theirs."""
    return _batches.update().where(_batches.c.id == sa.bindparam("batch_id"), _batches.c.status == BatchStatus.SENDING,
                                   _batches.c.attempts == sa.bindparam("attempt"))


async def finish(session: AsyncSession, outcomes: Iterable[Outcome], *, now: datetime) -> None:
    """Record what happened to claimed batches, in one statement (fenced by each claim's attempt
    number: a batch someone else took over meanwhile is theirs). A batch going back to pending
    keeps its first attempt's time, its key's age."""
    rows = [{"batch_id": o.batch.id, "attempt": o.batch.attempts, "new_status": o.status, "error": o.error,
             "sent": now if o.status == BatchStatus.SENT else None, "request_id": o.request_id, "dup": o.duplicate}
            for o in outcomes]
    if not rows:
        return
    await session.execute(
        _still_claimed()
        .values(status=sa.bindparam("new_status"), last_error=sa.bindparam("error"), sent_at=sa.bindparam("sent"),
                line_request_id=sa.bindparam("request_id"), duplicate=sa.bindparam("dup")),
        rows,
    )


async def renew(session: AsyncSession, batches: Iterable[ClaimedBatch], *, now: datetime) -> None:
    """Keep claimed batches the sender is still sending (fenced like `finish`)."""
    rows = [{"batch_id": batch.id, "attempt": batch.attempts} for batch in batches]
    if rows:
        await session.execute(_still_claimed().values(claimed_at=now), rows)


async def complete_finished(session: AsyncSession, *, now: datetime) -> list[int]:
    """Running campaigns with no batch left to send become completed (one statement). Run by
    every sender after its round and by the scheduler's tick: two rounds finishing at once
    each see the other's batches still in flight, so the tick is what settles the last one."""
    open_batches = sa.select(_batches.c.id).where(
        _batches.c.campaign_id == _campaigns.c.id, _batches.c.status.in_([BatchStatus.PENDING, BatchStatus.SENDING]))
    result = await session.execute(
        _campaigns.update()
        .where(_campaigns.c.status == CampaignStatus.RUNNING, ~sa.exists(open_batches))
        .values(status=CampaignStatus.COMPLETED, completed_at=now, updated_at=now)
        .returning(_campaigns.c.id)
    )
    return list(result.scalars())


# -- the timeline, behind the sender -------------------------------------------------------------


async def write_timeline(session: AsyncSession, *, limit: int = 20) -> int:
    """Timeline rows for up to `limit` sent batches not yet written: one INSERT … SELECT per
    message of the batch's variant, then the batches marked. Returns the rows written."""
    b = _batches
    due = (sa.select(b.c.id).where(b.c.status == BatchStatus.SENT, sa.not_(b.c.timeline_written))
           .order_by(b.c.id).limit(limit).with_for_update(skip_locked=True))
    claimed = (await session.execute(
        b.update().where(b.c.id.in_(due.scalar_subquery())).values(timeline_written=True)
        .returning(b.c.campaign_id, b.c.variant_id, b.c.seq, b.c.sent_at)
    )).all()
    written = 0
    variants: dict[int, list] = {}
    for campaign_id, variant_id, seq, sent_at in claimed:
        if variant_id not in variants:
            variants[variant_id] = (await session.get(CampaignVariant, variant_id)).messages
        for message in variants[variant_id]:
            text = message.get("text") if message.get("type") == "text" else message.get("altText")
            rows = sa.select(
                _recipients.c.customer_id, sa.literal(Direction.OUT.value), sa.literal(f"message.{message.get('type', 'unknown')}"),
                sa.literal(text, sa.Text), sa.literal(message, Interaction.__table__.c.payload.type),
                sa.literal("campaign"), sa.literal(str(campaign_id)), sa.literal(sent_at, Interaction.__table__.c.created_at.type),
            ).where(_recipients.c.campaign_id == campaign_id, _recipients.c.variant_id == variant_id,
                    _recipients.c.batch_seq == seq, _recipients.c.status == RecipientStatus.QUEUED)
            result = await session.execute(Interaction.__table__.insert().from_select(
                ["customer_id", "direction", "kind", "text", "payload", "sender_type", "sender_id", "created_at"], rows))
            written += result.rowcount
    return written


# -- tracked links ---------------------------------------------------------------------------------


async def record_click(
    session: AsyncSession, *, campaign_id: int, variant_id: int, customer_id: int, link: int, now: datetime,
) -> str | None:
    """The destination of a recipient's tracked link, with the tap recorded (a click row and the
    customer's timeline); None when no such link was sent to them (unknown campaign, variant or
    number, or a customer who was not a recipient of that variant)."""
    variant = await session.get(CampaignVariant, variant_id)
    if variant is None or variant.campaign_id != campaign_id or not 0 <= link < len(variant.links):
        return None
    recipient = await session.get(CampaignRecipient, (campaign_id, customer_id))
    if recipient is None or recipient.variant_id != variant_id:
        return None
    destination = variant.links[link]
    session.add(CampaignClick(campaign_id=campaign_id, variant_id=variant_id, customer_id=customer_id, link=link, clicked_at=now))
    session.add(Interaction(customer_id=customer_id, direction=Direction.IN, kind="link.clicked", text=destination,
                            payload={"campaign_id": campaign_id, "link": link}, sender_type="customer", created_at=now))
    await session.execute(sa.update(Customer).where(Customer.id == customer_id).values(last_interaction_at=now))
    await automations.record(session, AutomationTrigger.LINK_TAPPED, [customer_id], value=str(campaign_id),
                             data={"destination": destination, "link": link}, now=now)
    return destination


async def clicks(session: AsyncSession, campaign_id: int) -> tuple[int, int]:
    """(taps, customers who tapped) of the campaign's tracked links."""
    c = CampaignClick.__table__
    row = (await session.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(c.c.customer_id))).where(c.c.campaign_id == campaign_id))).one()
    return row[0], row[1]
