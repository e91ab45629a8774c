"""Support conversations: one per support thread, from a handoff until a person resolves it.

Every change is one conditional UPDATE, so two staff (or a staff member and the bot)
acting at once never both win: taking a pending conversation succeeds for exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import any_of
from .errors import Invalid
from .models import Conversation, ConversationNote, ConversationPriority, ConversationStatus, Customer, Direction, Interaction

ACTIVE = (ConversationStatus.PENDING, ConversationStatus.OPEN)
LABEL_MAX = 30
LABELS_MAX = 10


async def get(session: AsyncSession, conversation_id: int) -> Conversation | None:
    return await session.get(Conversation, conversation_id, populate_existing=True)


# session.info key: active conversations read ahead for a batch of events (`customers_with_active`).
_PREFETCHED = "kizuna.active_conversations"


async def customers_with_active(session: AsyncSession, line_user_ids: list[str], *, remember: set[str]) -> dict[str, Customer]:
    """The customers with these LINE user ids, by LINE user id, and in the same statement
    their active conversations, kept for the next `active_for` of each customer whose LINE
    user id is in `remember` (a worker's batch of events: those with one event in it).
    Each kept answer is used once: a later `active_for` of the same customer reads the
    database, so a change the batch makes meanwhile is seen."""
    if not line_user_ids:
        return {}
    statement = (
        sa.select(Customer, Conversation)
        .outerjoin(Conversation, sa.and_(Conversation.customer_id == Customer.id, Conversation.status.in_(ACTIVE)))
        .where(any_of(session, Customer.line_user_id, sorted(set(line_user_ids)), sa.String))
    )
    found: dict[str, Customer] = {}
    active: dict[int, list[Conversation]] = {}
    for customer, conversation in (await session.execute(statement)).all():
        found[customer.line_user_id] = customer
        active.setdefault(customer.id, [])
        if conversation is not None:
            active[customer.id].append(conversation)
    prefetched = session.info.setdefault(_PREFETCHED, {})
    for line_user_id, customer in found.items():
        if line_user_id in remember and len(active[customer.id]) <= 1:  # more than one: active_for's own statement raises
            prefetched[customer.id] = active[customer.id][0] if active[customer.id] else None
    return found


async def active_for(session: AsyncSession, customer_id: int) -> Conversation | None:
    """The customer's conversation a person owns or must take, if any."""
    prefetched = session.info.get(_PREFETCHED)
    if prefetched and customer_id in prefetched:
        return prefetched.pop(customer_id)
    statement = sa.select(Conversation).where(Conversation.customer_id == customer_id, Conversation.status.in_(ACTIVE))
    return (await session.execute(statement)).scalar_one_or_none()


async def latest_for(session: AsyncSession, customer_id: int) -> Conversation | None:
    statement = sa.select(Conversation).where(Conversation.customer_id == customer_id).order_by(Conversation.id.desc()).limit(1)
    return (await session.execute(statement)).scalar_one_or_none()


async def hand_off(session: AsyncSession, customer_id: int, *, reason: str, now: datetime, reopen_within: timedelta) -> tuple[Conversation, str]:
    """The customer asks for a person. Returns the conversation and what happened:
    "waiting" (one is pending or open already), "reopened" (the last one was resolved
    less than `reopen_within` ago; it goes back to its assignee, or to the queue), or
    "opened" (a new one)."""
    active = await active_for(session, customer_id)
    if active is not None:
        return active, "waiting"
    last = await latest_for(session, customer_id)
    if last is not None and last.resolved_at is not None and now - last.resolved_at < reopen_within:
        last.status = ConversationStatus.OPEN if last.assignee_id is not None else ConversationStatus.PENDING
        last.reason, last.waiting_since, last.resolved_at = reason, now, None
        last.csat_score = last.csat_at = None
        await session.flush()
        return last, "reopened"
    conversation = Conversation(customer_id=customer_id, reason=reason, created_at=now, waiting_since=now)
    session.add(conversation)
    await session.flush()
    return conversation, "opened"


async def take(session: AsyncSession, conversation_id: int, staff_id: int) -> bool:
    """Take a pending conversation nobody owns; False if someone else was first."""
    statement = (
        sa.update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status == ConversationStatus.PENDING, Conversation.assignee_id.is_(None))
        .values(status=ConversationStatus.OPEN, assignee_id=staff_id)
    )
    return (await session.execute(statement)).rowcount == 1


async def assign(session: AsyncSession, conversation_id: int, staff_id: int) -> bool:
    """Give an active conversation to a staff member (it becomes open); False if resolved."""
    statement = (
        sa.update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status.in_(ACTIVE))
        .values(status=ConversationStatus.OPEN, assignee_id=staff_id)
    )
    return (await session.execute(statement)).rowcount == 1


async def responded(session: AsyncSession, conversation_id: int, now: datetime) -> None:
    """A person wrote to the customer: the first time counts as the first response."""
    await session.execute(
        sa.update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.first_response_at.is_(None))
        .values(first_response_at=now)
    )


async def resolve(session: AsyncSession, conversation_id: int, now: datetime) -> bool:
    """Hand the customer back to the bot; False if it was resolved already."""
    statement = (
        sa.update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status.in_(ACTIVE))
        .values(status=ConversationStatus.RESOLVED, resolved_at=now)
    )
    return (await session.execute(statement)).rowcount == 1


async def record_csat(session: AsyncSession, conversation_id: int, score: int, now: datetime) -> bool:
    """The customer's 1-5 rating after a resolve; once per resolve."""
    statement = (
        sa.update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status == ConversationStatus.RESOLVED, Conversation.csat_score.is_(None))
        .values(csat_score=score, csat_at=now)
    )
    return (await session.execute(statement)).rowcount == 1


async def add_note(session: AsyncSession, conversation_id: int, author: str, text: str) -> ConversationNote:
    note = ConversationNote(conversation_id=conversation_id, author=author, text=text)
    session.add(note)
    await session.flush()
    return note


async def messages(session: AsyncSession, conversation: Conversation, *, limit: int = 500) -> list[Interaction | ConversationNote]:
    """What the conversation view shows, oldest first: the customer's timeline since the
    conversation began (both ways, and what was said between a resolve and a reopen),
    and the notes."""
    timeline = (
        await session.execute(
            sa.select(Interaction)
            .where(Interaction.customer_id == conversation.customer_id, Interaction.created_at >= conversation.created_at)
            .order_by(Interaction.id.desc())
            .limit(limit)
        )
    ).scalars()
    notes = (
        await session.execute(sa.select(ConversationNote).where(ConversationNote.conversation_id == conversation.id))
    ).scalars()
    return sorted([*timeline, *notes], key=lambda item: (item.created_at, isinstance(item, ConversationNote), item.id))


async def list_page(
    session: AsyncSession, *, status: ConversationStatus | None = None, assignee_id: int | None = None,
    limit: int = 50, after_id: int | None = None,
) -> list[Conversation]:
    """The inbox: waiting longest first for active ones, newest first for resolved ones."""
    statement = sa.select(Conversation).limit(limit)
    if status is not None:
        statement = statement.where(Conversation.status == status)
    if assignee_id is not None:
        statement = statement.where(Conversation.assignee_id == assignee_id)
    if after_id is not None:
        statement = statement.where(Conversation.id > after_id)
    order = (Conversation.waiting_since, Conversation.id) if status in ACTIVE else (Conversation.id,)
    return list((await session.execute(statement.order_by(*order))).scalars())


async def waiting(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many customers wait for a person, and since when the longest has waited."""
    row = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.min(Conversation.waiting_since)).where(Conversation.status == ConversationStatus.PENDING)
        )
    ).one()
    return row[0], row[1]


async def set_labels(session: AsyncSession, conversation_id: int, labels: list[str], priority: str) -> bool:
    """Labels and priority, as staff sort the inbox by them; False if there is no such conversation."""
    try:
        priority = ConversationPriority(priority)
    except ValueError:
        raise Invalid("priority", "one of " + ", ".join(ConversationPriority)) from None
    cleaned: list[str] = []
    for label in labels:
        label = " ".join(label.split())
        if not label or label in cleaned:
            continue
        if len(label) > LABEL_MAX or not label.isprintable():
            raise Invalid("labels", f"a label is at most {LABEL_MAX} printable characters")
        cleaned.append(label)
    if len(cleaned) > LABELS_MAX:
        raise Invalid("labels", f"at most {LABELS_MAX} labels")
    statement = sa.update(Conversation).where(Conversation.id == conversation_id).values(labels=cleaned, priority=priority)
    return (await session.execute(statement)).rowcount == 1


# -- what the console shows --------------------------------------------------------------------


class Tab(StrEnum):
    """The inbox's tabs: 対応待ち, 自分の担当, すべて (every active one), 解決済み."""

    PENDING = "pending"
    MINE = "mine"
    ALL = "all"
    RESOLVED = "resolved"


@dataclass
class InboxRow:
    conversation: Conversation
    customer: Customer
    last_message: Interaction | None  # the customer's or a person's latest message (the preview)
    # The customer wrote after the last reply of a person (or no person has replied yet):
    # shown highlighted while the conversation is active.
    unanswered: bool


_PRIORITY_RANK = sa.case(
    {ConversationPriority.URGENT: 0, ConversationPriority.HIGH: 1, ConversationPriority.NORMAL: 2, ConversationPriority.LOW: 3},
    value=Conversation.priority, else_=2,
)


def _tab_filter(tab: Tab, staff_id: int):
    if tab is Tab.PENDING:
        return Conversation.status == ConversationStatus.PENDING
    if tab is Tab.MINE:
        return sa.and_(Conversation.status.in_(ACTIVE), Conversation.assignee_id == staff_id)
    if tab is Tab.ALL:
        return Conversation.status.in_(ACTIVE)
    return Conversation.status == ConversationStatus.RESOLVED


def _latest(direction_filter) -> sa.ScalarSelect:
    """The id of the customer's latest interaction matching the filter (one range of
    ix_interactions_customer_id_id per conversation shown)."""
    return (
        sa.select(sa.func.max(Interaction.id))
        .where(Interaction.customer_id == Conversation.customer_id, direction_filter)
        .scalar_subquery()
    )


async def inbox(session: AsyncSession, *, tab: Tab, staff_id: int, limit: int, offset: int = 0) -> list[InboxRow]:
    """One page of a tab: the most urgent, then the longest waiting first; resolved ones
    most recently resolved first."""
    # The preview: the latest message of the customer or of a person (the bot's automatic
    # 「担当者におつなぎします」 says nothing about what the customer needs).
    last_message = _latest(sa.and_(Interaction.kind.like("message.%"), sa.or_(Interaction.direction == Direction.IN, Interaction.sender_type == "staff")))
    last_in = _latest(sa.and_(Interaction.direction == Direction.IN, Interaction.kind.like("message.%")))
    last_staff = _latest(sa.and_(Interaction.direction == Direction.OUT, Interaction.sender_type == "staff"))
    order = (
        (Conversation.resolved_at.desc(), Conversation.id.desc()) if tab is Tab.RESOLVED
        else (_PRIORITY_RANK, Conversation.waiting_since, Conversation.id)
    )
    # The page is picked from the conversations alone, then joined to its customers. Joined
    # before the sort (one statement, one LIMIT), every conversation of the tab met the
    # customers table, which PostgreSQL did with a hash join over all of it: ~100 ms of
    # both cores per page at 1,000,000 customers (bench/inbox_page.py); now ~50 index lookups.
    page = sa.select(Conversation.id).where(_tab_filter(tab, staff_id)).order_by(*order).limit(limit).offset(offset).subquery("page")
    statement = (
        sa.select(Conversation, Customer, last_message, last_in, last_staff)
        .join(page, page.c.id == Conversation.id)
        .join(Customer, Customer.id == Conversation.customer_id)
        .order_by(*order)
    )
    rows = (await session.execute(statement)).all()
    wanted = [row[2] for row in rows if row[2] is not None]
    messages = {}
    if wanted:
        found = await session.execute(sa.select(Interaction).where(Interaction.id.in_(wanted)))
        messages = {item.id: item for item in found.scalars()}
    return [
        InboxRow(
            conversation=conversation, customer=customer, last_message=messages.get(last_id),
            unanswered=conversation.status != ConversationStatus.RESOLVED and last_in_id is not None and last_in_id > (last_staff_id or 0),
        )
        for conversation, customer, last_id, last_in_id, last_staff_id in rows
    ]


async def tab_counts(session: AsyncSession, staff_id: int) -> dict[Tab, int]:
    """How many conversations each active tab holds (the resolved tab is not counted)."""
    count = sa.func.count
    pending, mine, active = (await session.execute(sa.select(
        count().filter(_tab_filter(Tab.PENDING, staff_id)),
        count().filter(_tab_filter(Tab.MINE, staff_id)),
        count().filter(_tab_filter(Tab.ALL, staff_id)),
    ).where(Conversation.status.in_(ACTIVE)))).one()
    return {Tab.PENDING: pending, Tab.MINE: mine, Tab.ALL: active}


async def of_customer(session: AsyncSession, customer_id: int, *, limit: int = 20) -> list[Conversation]:
    """The customer's conversations, newest first."""
    statement = sa.select(Conversation).where(Conversation.customer_id == customer_id).order_by(Conversation.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


async def timeline(
    session: AsyncSession, customer_id: int, *, limit: int = 200, before_id: int | None = None,
) -> tuple[list[Interaction | ConversationNote], bool]:
    """The customer's whole timeline, oldest first, one page back from `before_id` (newest
    page first), with staff's notes of the customer's conversations in their place; and
    whether there is more before it. Conversation boundaries are the timeline's own
    `conversation.*` rows."""
    statement = sa.select(Interaction).where(Interaction.customer_id == customer_id).order_by(Interaction.id.desc()).limit(limit + 1)
    if before_id is not None:
        statement = statement.where(Interaction.id < before_id)
    rows = list((await session.execute(statement)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    notes = (
        sa.select(ConversationNote).join(Conversation, Conversation.id == ConversationNote.conversation_id)
        .where(Conversation.customer_id == customer_id)
    )
    if more and rows:
        notes = notes.where(ConversationNote.created_at >= rows[-1].created_at)
    if before_id is not None:
        boundary = await session.get(Interaction, before_id)
        if boundary is not None:
            notes = notes.where(ConversationNote.created_at < boundary.created_at)
    items = [*rows, *(await session.execute(notes)).scalars()]
    return sorted(items, key=lambda item: (item.created_at, isinstance(item, ConversationNote), item.id)), more
