"""The timeline: an append-only row for every inbound event and outbound message."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Interaction


async def append(session: AsyncSession, interaction: Interaction) -> Interaction:
    session.add(interaction)
    await session.flush()
    return interaction


async def latest(
    session: AsyncSession, customer_id: int, *, limit: int, before_id: int | None = None
) -> list[Interaction]:
    """Newest first; one range scan of ix_interactions_customer_id_id."""
    statement = (
        sa.select(Interaction)
        .where(Interaction.customer_id == customer_id)
        .order_by(Interaction.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        statement = statement.where(Interaction.id < before_id)
    return list((await session.execute(statement)).scalars())


async def of_delivery(session: AsyncSession, delivery_id: int) -> list[Interaction]:
    """The timeline rows of one outbound delivery (one per message)."""
    statement = sa.select(Interaction).where(Interaction.delivery_id == delivery_id).order_by(Interaction.id)
    return list((await session.execute(statement)).scalars())
