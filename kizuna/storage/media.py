"""Media customers sent (images, video, audio, files), cached once fetched from LINE."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import MediaContent
from .types import utcnow


async def get(session: AsyncSession, message_id: str) -> MediaContent | None:
    return await session.get(MediaContent, message_id)


async def put(session: AsyncSession, message_id: str, content_type: str, data: bytes) -> None:
    """Keep the content; two processes fetching one message at once store it once."""
    try:
        async with session.begin_nested():
            session.add(MediaContent(message_id=message_id, content_type=content_type[:100], size=len(data), data=data, fetched_at=utcnow()))
            await session.flush()
    except sa.exc.IntegrityError:
        pass
