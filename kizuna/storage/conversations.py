"""Support conversations: one per support thread, from a handoff until a person resolves it.

Every change is one conditional UPDATE, so two staff (or a staff member and the bot)
acting at once never both win: taking a pending conversation succeeds for exactly one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Conversation, ConversationNote, ConversationStatus, Interaction

ACTIVE = (ConversationStatus.PENDING, ConversationStatus.OPEN)


async def get(session: AsyncSession, conversation_id: int) -> Conversation | None:
    return await session.get(Conversation, conversation_id, populate_existing=True)


async def active_for(session: AsyncSession, customer_id: int) -> Conversation | None:
    """The customer's conversation a person owns or must take, if any."""
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
