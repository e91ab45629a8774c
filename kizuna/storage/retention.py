"""Retention (issue 16 part 4): how long each kind of data is kept, and the bounded deletes that
enforce it. The run itself (a dry run or a purge, scheduled or by hand, with its time budget and
its record) is the service's: campaigns/retention.py.

A policy is one kind of data and its period ("90 days", "13 months"); `KINDS` has the kinds
with their defaults, and `retention_policies` the shop's edits (a kind without a row keeps its
default, so a fresh or truncated database is never left without a policy).

Each policy covers one or more `Target`s: one table's rows that are old enough. A target is
purged in batches of at most `BATCH` rows by primary key, one short transaction each (no long
locks: the webhook and the senders keep writing meanwhile), and counted the same way for a dry
run. A pending inbound event, a delivery still to be sent and a running campaign's recipients
are never targets, whatever their age.
"""

from __future__ import annotations

import calendar
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .errors import Invalid
from .models import (
    ApiEvent, Campaign, CampaignRecipient, CampaignStatus, ConsentRecord, Customer, Delivery, DeliveryStatus, Direction,
    EventStatus, InboundEvent, Interaction, LoginAttempt, MediaContent, RetentionPolicy, RetentionUnit, StaffSession,
)
from .types import utcnow

BATCH = 1000  # rows per transaction
CUSTOMER_BATCH = 100  # customers erased per transaction (an eraser may touch many tables per customer)
PERIOD_MAX = {RetentionUnit.DAYS: 3650, RetentionUnit.MONTHS: 120}


@dataclass(frozen=True)
class Kind:
    key: str
    period: int
    unit: RetentionUnit


# The kinds and their defaults (issue 16): the console names them (retention.kind.<key>).
INBOUND_EVENTS = "inbound_events"  # raw webhook bodies: processed events only
DELIVERY_DETAILS = "delivery_details"  # deliveries, completed campaigns' recipients, campaign/sequence timeline rows
STAFF_LOGINS = "staff_logins"  # login attempts and ended console sessions
API_EVENTS = "api_events"
MEDIA = "media"  # images, videos, audio and files customers sent
UNFOLLOWED_CUSTOMERS = "unfollowed_customers"  # personal data of customers who left the account
CONSENT_RECORDS = "consent_records"  # the consent ledger: APPI asks for 3 years at least

KINDS: tuple[Kind, ...] = (
    Kind(INBOUND_EVENTS, 90, RetentionUnit.DAYS),
    Kind(DELIVERY_DETAILS, 13, RetentionUnit.MONTHS),
    Kind(STAFF_LOGINS, 90, RetentionUnit.DAYS),
    Kind(API_EVENTS, 13, RetentionUnit.MONTHS),
    Kind(MEDIA, 13, RetentionUnit.MONTHS),
    Kind(UNFOLLOWED_CUSTOMERS, 24, RetentionUnit.MONTHS),
    Kind(CONSENT_RECORDS, 37, RetentionUnit.MONTHS),
)
# Kinds the law sets a floor for: the consent ledger is kept 3 years (APPI's record-keeping period).
MINIMUM = {CONSENT_RECORDS: {RetentionUnit.MONTHS: 36, RetentionUnit.DAYS: 3 * 365 + 1}}
_BY_KEY = {kind.key: kind for kind in KINDS}


@dataclass(frozen=True)
class Policy:
    kind: str
    period: int
    unit: RetentionUnit
    enabled: bool
    default: bool  # no edit stored: the code's default
    updated_at: datetime | None = None
    updated_by: str | None = None

    def cutoff(self, now: datetime) -> datetime:
        """Rows older than this are past their period."""
        if self.unit == RetentionUnit.DAYS:
            return now - timedelta(days=self.period)
        return months_before(now, self.period)


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (31 March - 1 month: 28/29 February)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


async def policies(session: AsyncSession) -> list[Policy]:
    """Every kind's policy, in `KINDS` order."""
    stored = {row.kind: row for row in (await session.execute(sa.select(RetentionPolicy))).scalars()}
    result = []
    for kind in KINDS:
        row = stored.get(kind.key)
        if row is None:
            result.append(Policy(kind.key, kind.period, kind.unit, True, True))
        else:
            result.append(Policy(kind.key, row.period, RetentionUnit(row.unit), row.enabled, False, row.updated_at, row.updated_by))
    return result


def check_policy(kind: object, period: object, unit: object) -> tuple[str, int, RetentionUnit]:
    """The policy's values, or Invalid naming the first wrong one."""
    if kind not in _BY_KEY:
        raise Invalid("kind", f"must be one of {', '.join(_BY_KEY)}")
    if unit not in tuple(RetentionUnit):
        raise Invalid("unit", "must be days or months")
    unit = RetentionUnit(unit)
    if isinstance(period, str) and period.strip().isdigit() and len(period.strip()) <= 6:
        period = int(period.strip())
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= PERIOD_MAX[unit]:
        raise Invalid("period", f"must be a whole number from 1 to {PERIOD_MAX[unit]} ({unit})")
    floor = MINIMUM.get(str(kind), {}).get(unit)
    if floor is not None and period < floor:
        raise Invalid("period", f"must be at least {floor} {unit} (3 years): APPI's record-keeping period")
    return str(kind), period, unit


async def set_policy(session: AsyncSession, kind: object, *, period: object, unit: object, enabled: bool,
                     actor: audit.Actor | None = None) -> Policy:
    """Store the shop's policy for `kind` (Invalid: nothing changed), audited when someone is named."""
    kind, period, unit = check_policy(kind, period, unit)
    row = await session.get(RetentionPolicy, kind, with_for_update=True)
    before = None if row is None else {"period": row.period, "unit": row.unit, "enabled": row.enabled}
    if row is None:
        row = RetentionPolicy(kind=kind, period=period, unit=unit)
        session.add(row)
    row.period, row.unit, row.enabled = period, str(unit), bool(enabled)
    row.updated_at = utcnow()
    row.updated_by = actor.label[:254] if actor else None
    audit.record_by(session, actor, audit.Action.RETENTION_POLICY_CHANGED, target=f"retention:{kind}", before=before,
                    after={"period": period, "unit": str(unit), "enabled": bool(enabled)})
    await session.flush()
    return Policy(kind, period, unit, bool(enabled), False, row.updated_at, row.updated_by)


# -- what is purged: the targets ------------------------------------------------------------

# The eraser of one customer's personal data: (session, customer id) -> None, in the caller's
# transaction. The purge is given one (campaigns/retention.py: the data-subject erase).
Eraser = Callable[[AsyncSession, int], Awaitable[None]]

# A customer's personal columns: what tells whether a customer still has personal data (an erased one has none, whoever erased them).
PERSONAL_COLUMNS = (
    "line_user_id", "display_name", "picture_url", "status_message", "full_name", "name_kana", "birthday", "gender",
    "prefecture", "phone", "email",
)


def _has_personal_data() -> sa.ColumnElement:
    return sa.or_(*(getattr(Customer, name).is_not(None) for name in PERSONAL_COLUMNS))


@dataclass(frozen=True)
class Target:
    """One table's rows a policy removes. `count` for a dry run; `purge_batch(session, cutoff,
    limit, eraser=, state=)` removes at most `limit` of them in the caller's transaction and says
    how many (`state`: a dict of the run's, for a cursor kept between batches)."""

    key: str  # what the run's counts name it by
    kind: str
    count: Callable[[AsyncSession, datetime], Awaitable[int]]
    purge_batch: Callable[..., Awaitable[int]]


async def _count(session: AsyncSession, table: type, condition: sa.ColumnElement) -> int:
    return int((await session.execute(sa.select(sa.func.count()).select_from(table).where(condition))).scalar_one())


async def _delete_by_key(session: AsyncSession, table: type, key: sa.Column, condition: sa.ColumnElement, limit: int,
                         before_delete: Callable[[AsyncSession, list], Awaitable[None]] | None = None,
                         state: dict | None = None) -> int:
    """Delete up to `limit` rows matching `condition`, lowest keys first, by primary key. `state`
    (one dict per target and run) keeps the last key deleted, so the next batch starts after it
    instead of reading again the rows before it that the condition keeps."""
    if state is not None and "after" in state:
        condition = sa.and_(condition, key > state["after"])
    keys = list((await session.execute(sa.select(key).where(condition).order_by(key).limit(limit))).scalars())
    if not keys:
        return 0
    if before_delete is not None:
        await before_delete(session, keys)
    await session.execute(sa.delete(table).where(key.in_(keys)))
    if state is not None:
        state["after"] = keys[-1]
    return len(keys)


async def _first_id_since(session: AsyncSession, key: sa.Column, moment_column: sa.Column, cutoff: datetime) -> int | None:
    """The smallest id of a row at or after `cutoff`, in a table whose ids grow with time and that
    has no index on its time column: a primary-key scan that stops at the first young row, so
    the deletes below read only the old rows (None: every row is old)."""
    return (await session.execute(sa.select(key).where(moment_column >= cutoff).order_by(key).limit(1))).scalar()


# inbound events: processed ones only (a pending event is never purged, however old)
def _events_old(cutoff: datetime) -> sa.ColumnElement:
    return sa.and_(InboundEvent.status.in_((EventStatus.DONE, EventStatus.PARKED)), InboundEvent.received_at < cutoff)


async def _unlink_events(session: AsyncSession, ids: list) -> None:
    # The timeline and the outbox keep their rows; only the link to the raw event goes.
    await session.execute(sa.update(Interaction).where(Interaction.inbound_event_id.in_(ids)).values(inbound_event_id=None))
    await session.execute(sa.update(Delivery).where(Delivery.inbound_event_id.in_(ids)).values(inbound_event_id=None))


# deliveries: finished ones only
_DELIVERY_DONE = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNDETERMINED)


def _deliveries_old(cutoff: datetime) -> sa.ColumnElement:
    return sa.and_(Delivery.status.in_(_DELIVERY_DONE), Delivery.created_at < cutoff)


async def _unlink_deliveries(session: AsyncSession, ids: list) -> None:
    await session.execute(sa.update(Interaction).where(Interaction.delivery_id.in_(ids)).values(delivery_id=None))


# campaign recipients: of campaigns that ended (completed or cancelled) before the cutoff
def _campaigns_ended_before(cutoff: datetime) -> sa.Select:
    return sa.select(Campaign.id).where(
        Campaign.status.in_((CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)),
        sa.func.coalesce(Campaign.completed_at, Campaign.updated_at) < cutoff,
    )


async def _count_recipients(session: AsyncSession, cutoff: datetime) -> int:
    return await _count(session, CampaignRecipient, CampaignRecipient.campaign_id.in_(_campaigns_ended_before(cutoff)))


async def _purge_recipients(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    campaign_id = (await session.execute(
        sa.select(CampaignRecipient.campaign_id).where(CampaignRecipient.campaign_id.in_(_campaigns_ended_before(cutoff))).limit(1)
    )).scalar()
    if campaign_id is None:
        return 0
    customers = (sa.select(CampaignRecipient.customer_id).where(CampaignRecipient.campaign_id == campaign_id)
                 .order_by(CampaignRecipient.customer_id).limit(limit))
    result = await session.execute(sa.delete(CampaignRecipient).where(
        CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.customer_id.in_(customers.scalar_subquery())
    ))
    return result.rowcount


# the timeline rows of campaign and sequence sends
_MARKETING_SENDERS = ("campaign", "sequence")


def _timeline_old(cutoff: datetime, below: int | None) -> sa.ColumnElement:
    condition = sa.and_(Interaction.direction == Direction.OUT, Interaction.sender_type.in_(_MARKETING_SENDERS),
                        Interaction.created_at < cutoff)
    return condition if below is None else sa.and_(condition, Interaction.id < below)


async def _count_timeline(session: AsyncSession, cutoff: datetime) -> int:
    below = await _first_id_since(session, Interaction.id, Interaction.created_at, cutoff)
    return await _count(session, Interaction, _timeline_old(cutoff, below))


async def _purge_timeline(session: AsyncSession, cutoff: datetime, limit: int, *, state: dict, **_: object) -> int:
    if "below" not in state:  # once a run: the first young row does not move
        state["below"] = await _first_id_since(session, Interaction.id, Interaction.created_at, cutoff)
    return await _delete_by_key(session, Interaction, Interaction.id, _timeline_old(cutoff, state["below"]), limit, state=state)


# console sessions: ended (or not seen) before the cutoff
def _sessions_old(cutoff: datetime) -> sa.ColumnElement:
    return sa.or_(StaffSession.ended_at < cutoff, StaffSession.last_seen_at < cutoff)


def _api_events_old(cutoff: datetime, below: int | None) -> sa.ColumnElement:
    return ApiEvent.created_at < cutoff if below is None else sa.and_(ApiEvent.created_at < cutoff, ApiEvent.id < below)


async def _count_api_events(session: AsyncSession, cutoff: datetime) -> int:
    below = await _first_id_since(session, ApiEvent.id, ApiEvent.created_at, cutoff)
    return await _count(session, ApiEvent, _api_events_old(cutoff, below))


async def _purge_api_events(session: AsyncSession, cutoff: datetime, limit: int, *, state: dict, **_: object) -> int:
    if "below" not in state:
        state["below"] = await _first_id_since(session, ApiEvent.id, ApiEvent.created_at, cutoff)
    return await _delete_by_key(session, ApiEvent, ApiEvent.id, _api_events_old(cutoff, state["below"]), limit, state=state)


# customers who left: unfollowed (LINE's block) before the cutoff and not erased yet
def unfollowed_candidates(cutoff: datetime) -> sa.ColumnElement:
    """Customers who unfollowed (blocked) the account before `cutoff`, have not come back, are not
    merged into another, and still hold personal data."""
    return sa.and_(Customer.followed.is_(False), Customer.unfollowed_at < cutoff, Customer.merged_into_id.is_(None),
                   _has_personal_data())


async def _erase_unfollowed(session: AsyncSession, cutoff: datetime, limit: int, eraser: Eraser) -> int:
    ids = list((await session.execute(
        sa.select(Customer.id).where(unfollowed_candidates(cutoff)).order_by(Customer.id).limit(min(limit, CUSTOMER_BATCH))
    )).scalars())
    for customer_id in ids:
        await eraser(session, customer_id)
    return len(ids)


def _simple(key: str, kind: str, table: type, pk: sa.Column, condition: Callable[[datetime], sa.ColumnElement],
            before_delete=None) -> Target:
    async def count(session: AsyncSession, cutoff: datetime) -> int:
        return await _count(session, table, condition(cutoff))

    async def purge(session: AsyncSession, cutoff: datetime, limit: int, *, state: dict, **_: object) -> int:
        return await _delete_by_key(session, table, pk, condition(cutoff), limit, before_delete, state=state)

    return Target(key, kind, count, purge)


def _with_limit(purge: Callable[[AsyncSession, datetime, int], Awaitable[int]]):
    async def purge_batch(session: AsyncSession, cutoff: datetime, limit: int, **_: object) -> int:
        return await purge(session, cutoff, limit)

    return purge_batch


async def _count_unfollowed(session: AsyncSession, cutoff: datetime) -> int:
    return await _count(session, Customer, unfollowed_candidates(cutoff))


async def _purge_unfollowed(session: AsyncSession, cutoff: datetime, limit: int, *, eraser: Eraser, **_: object) -> int:
    return await _erase_unfollowed(session, cutoff, limit, eraser)


TARGETS: tuple[Target, ...] = (
    _simple("inbound_events", INBOUND_EVENTS, InboundEvent, InboundEvent.id, _events_old, _unlink_events),
    # Timeline rows and recipients first, then the deliveries they may point at.
    Target("timeline_deliveries", DELIVERY_DETAILS, _count_timeline, _purge_timeline),
    Target("campaign_recipients", DELIVERY_DETAILS, _count_recipients, _with_limit(_purge_recipients)),
    _simple("deliveries", DELIVERY_DETAILS, Delivery, Delivery.id, _deliveries_old, _unlink_deliveries),
    _simple("login_attempts", STAFF_LOGINS, LoginAttempt, LoginAttempt.id, lambda cutoff: LoginAttempt.at < cutoff),
    _simple("staff_sessions", STAFF_LOGINS, StaffSession, StaffSession.id_hash, _sessions_old),
    Target("api_events", API_EVENTS, _count_api_events, _purge_api_events),
    _simple("media_contents", MEDIA, MediaContent, MediaContent.message_id, lambda cutoff: MediaContent.fetched_at < cutoff),
    Target("unfollowed_customers", UNFOLLOWED_CUSTOMERS, _count_unfollowed, _purge_unfollowed),
    _simple("consent_records", CONSENT_RECORDS, ConsentRecord, ConsentRecord.id, lambda cutoff: ConsentRecord.at < cutoff),
)
TARGET_KEYS = tuple(target.key for target in TARGETS)

