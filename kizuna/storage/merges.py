"""Merging two customers who are one person (名寄せ), decided by an admin on a merge candidate,
and undoing it within 7 days.

Which one stays: the one on LINE (LINE's events find a customer by `customers.line_user_id`, so
that row must live on); when neither is, the older (lower id). Two customers both on LINE are
two LINE accounts and are never merged.

What moves to the one kept: the timeline, orders, identities, tags (those it lacks), coupon grants
(unless it holds the same one-per-customer coupon), support conversations (a resolved one, or an
open one when the kept customer has none open). Its empty details (name, kana, birthday, gender,
prefecture, phone, e-mail) take the merged one's. The merged row stays, marked `merged_into_id`,
so lists and matching skip it and an undo can bring it back: `customer_merges` lists every row
that moved and every column filled. An undo moves exactly those back (what arrived after the
merge stays with the kept customer) and empties the filled columns still holding what was put
there. Both are audited and leave a row on the kept customer's timeline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, customer_metrics, customers
from .errors import Conflict, NotFound
from .models import (
    ConversationStatus, CouponGrant, Conversation, Customer, CustomerIdentity, CustomerMerge, CustomerTag, Direction, Interaction,
    MergeCandidate, MergeStatus, Order,
)

UNDO_DAYS = 7
FILLED_COLUMNS = ("full_name", "name_kana", "birthday", "gender", "prefecture", "phone", "email")
# Tables whose rows move by id: the model and its name in `customer_merges.moved`.
_BY_ID = {"interactions": Interaction, "orders": Order, "identities": CustomerIdentity}


async def _candidate(session: AsyncSession, candidate_id: int) -> MergeCandidate:
    candidate = await session.get(MergeCandidate, candidate_id, with_for_update=True)
    if candidate is None:
        raise NotFound("no such merge candidate")
    return candidate


async def dismiss(session: AsyncSession, candidate_id: int, *, actor: audit.Actor | None, now: datetime) -> MergeCandidate:
    """Not the same person: the pair leaves the list (and is never listed again)."""
    candidate = await _candidate(session, candidate_id)
    if candidate.status != MergeStatus.PENDING:
        raise Conflict("not_pending", f"this merge candidate is already {candidate.status}")
    candidate.status, candidate.decided_at = MergeStatus.DISMISSED, now
    audit.record_by(session, actor, audit.Action.MERGE_DISMISSED, target=f"merge_candidate:{candidate.id}",
                    customers=[candidate.customer_id, candidate.other_customer_id])
    return candidate


async def merge(session: AsyncSession, candidate_id: int, *, actor: audit.Actor, now: datetime) -> CustomerMerge:
    candidate = await _candidate(session, candidate_id)
    if candidate.status != MergeStatus.PENDING:
        raise Conflict("not_pending", f"this merge candidate is already {candidate.status}")
    first = await customers.get_existing(session, candidate.customer_id)
    second = await customers.get_existing(session, candidate.other_customer_id)
    if first.merged_into_id is not None or second.merged_into_id is not None:
        raise Conflict("already_merged", "one of the two customers was merged into another; undo that merge first")
    if first.line_user_id and second.line_user_id:
        raise Conflict("both_on_line", "both customers are on LINE: two LINE accounts cannot become one customer")
    kept, merged = (second, first) if second.line_user_id and not first.line_user_id else (first, second)
    assert kept.id is not None and merged.id is not None

    moved: dict[str, list] = {}
    for name, model in _BY_ID.items():
        ids = list((await session.execute(sa.select(model.id).where(model.customer_id == merged.id))).scalars())
        if ids:
            await session.execute(sa.update(model).where(model.id.in_(ids)).values(customer_id=kept.id))
        moved[name] = ids

    kept_tags = set((await session.execute(sa.select(CustomerTag.tag).where(CustomerTag.customer_id == kept.id))).scalars())
    tags = [tag for tag in (await session.execute(sa.select(CustomerTag.tag).where(CustomerTag.customer_id == merged.id))).scalars()
            if tag not in kept_tags]
    if tags:
        await session.execute(sa.update(CustomerTag).where(CustomerTag.customer_id == merged.id, CustomerTag.tag.in_(tags))
                              .values(customer_id=kept.id))
    moved["tags"] = tags

    # A one-per-customer coupon both hold stays with the merged customer (the kept one has it already).
    held = sa.select(CouponGrant.coupon_id, CouponGrant.per_customer_key).where(CouponGrant.customer_id == kept.id)
    held_keys = set((await session.execute(held)).all())
    grants = [grant_id for grant_id, coupon_id, key in (await session.execute(
        sa.select(CouponGrant.id, CouponGrant.coupon_id, CouponGrant.per_customer_key).where(CouponGrant.customer_id == merged.id)
    )).all() if (coupon_id, key) not in held_keys]
    if grants:
        await session.execute(sa.update(CouponGrant).where(CouponGrant.id.in_(grants)).values(customer_id=kept.id))
    moved["coupon_grants"] = grants

    # At most one conversation a person owns per customer: an open one moves only if the kept has none.
    kept_open = (await session.execute(sa.select(sa.func.count()).select_from(Conversation).where(
        Conversation.customer_id == kept.id, Conversation.status != ConversationStatus.RESOLVED))).scalar_one()
    conversations = [conversation_id for conversation_id, status in (await session.execute(
        sa.select(Conversation.id, Conversation.status).where(Conversation.customer_id == merged.id)
    )).all() if status == ConversationStatus.RESOLVED or not kept_open]
    if conversations:
        await session.execute(sa.update(Conversation).where(Conversation.id.in_(conversations)).values(customer_id=kept.id))
    moved["conversations"] = conversations

    filled = {}
    for column in FILLED_COLUMNS:
        value = getattr(merged, column)
        if getattr(kept, column) is None and value is not None:
            setattr(kept, column, value)
            filled[column] = value.isoformat() if hasattr(value, "isoformat") else value
    merged.merged_into_id = kept.id
    candidate.status, candidate.decided_at = MergeStatus.MERGED, now
    record = CustomerMerge(customer_id=kept.id, merged_customer_id=merged.id, candidate_id=candidate.id, moved=moved,
                           filled=filled, merged_at=now, merged_by=actor.label[:254])
    session.add(record)
    await session.flush()
    if moved.get("orders"):  # segments read the kept aggregates: they follow the orders at once
        await customer_metrics.refresh(session, [kept.id, merged.id], now=now)
    session.add(Interaction(customer_id=kept.id, direction=Direction.SYS, kind="customer.merged", sender_type="staff",
                            sender_id=actor.label[:64], created_at=now,
                            payload={"merge_id": record.id, "merged_customer_id": merged.id,
                                     "moved": {name: len(rows) for name, rows in moved.items()}}))
    audit.record(session, actor, audit.Action.CUSTOMER_MERGED, target=customers.audit_target(kept),
                 merge_id=record.id, merged_customer_id=merged.id, moved={name: len(rows) for name, rows in moved.items()})
    return record


async def undo(session: AsyncSession, merge_id: int, *, actor: audit.Actor, now: datetime) -> CustomerMerge:
    record = await session.get(CustomerMerge, merge_id, with_for_update=True)
    if record is None:
        raise NotFound("no such merge")
    if record.undone_at is not None:
        raise Conflict("already_undone", "this merge was undone already")
    if now - record.merged_at > timedelta(days=UNDO_DAYS):
        raise Conflict("undo_expired", f"a merge can be undone for {UNDO_DAYS} days; this one is older")
    kept = await customers.get_existing(session, record.customer_id)
    merged = await customers.get_existing(session, record.merged_customer_id)
    back = {"customer_id": merged.id}
    for name, model in _BY_ID.items():
        if record.moved.get(name):
            await session.execute(sa.update(model).where(model.id.in_(record.moved[name]), model.customer_id == kept.id).values(back))
    if record.moved.get("tags"):
        await session.execute(sa.update(CustomerTag).where(CustomerTag.customer_id == kept.id,
                                                           CustomerTag.tag.in_(record.moved["tags"])).values(back))
    if record.moved.get("coupon_grants"):
        await session.execute(sa.update(CouponGrant).where(CouponGrant.id.in_(record.moved["coupon_grants"]),
                                                           CouponGrant.customer_id == kept.id).values(back))
    if record.moved.get("conversations"):
        await session.execute(sa.update(Conversation).where(Conversation.id.in_(record.moved["conversations"]),
                                                            Conversation.customer_id == kept.id).values(back))
    for column, value in record.filled.items():
        current = getattr(kept, column)
        if (current.isoformat() if hasattr(current, "isoformat") else current) == value:
            setattr(kept, column, None)  # still what the merge put there: it goes back to empty
    merged.merged_into_id = None
    if record.candidate_id is not None:
        candidate = await session.get(MergeCandidate, record.candidate_id)
        if candidate is not None:
            candidate.status, candidate.decided_at = MergeStatus.PENDING, None
    record.undone_at, record.undone_by = now, actor.label[:254]
    if record.moved.get("orders"):
        await session.flush()
        await customer_metrics.refresh(session, [kept.id, merged.id], now=now)
    session.add(Interaction(customer_id=kept.id, direction=Direction.SYS, kind="customer.unmerged", sender_type="staff",
                            sender_id=actor.label[:64], created_at=now,
                            payload={"merge_id": record.id, "merged_customer_id": merged.id}))
    audit.record(session, actor, audit.Action.CUSTOMER_UNMERGED, target=customers.audit_target(kept),
                 merge_id=record.id, merged_customer_id=merged.id)
    return record


async def undoable(session: AsyncSession, *, now: datetime, limit: int = 50) -> list[CustomerMerge]:
    """Merges that can still be undone (not undone, younger than UNDO_DAYS), newest first."""
    statement = (
        sa.select(CustomerMerge)
        .where(CustomerMerge.undone_at.is_(None), CustomerMerge.merged_at > now - timedelta(days=UNDO_DAYS))
        .order_by(CustomerMerge.id.desc()).limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def order_totals(session: AsyncSession, customer_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per customer: (orders, spent), what a person deciding a merge compares."""
    if not customer_ids:
        return {}
    statement = (
        sa.select(Order.customer_id, sa.func.count(), sa.func.coalesce(sa.func.sum(Order.total), 0))
        .where(Order.customer_id.in_(customer_ids)).group_by(Order.customer_id)
    )
    return {customer_id: (count, int(spent)) for customer_id, count, spent in (await session.execute(statement)).all()}
