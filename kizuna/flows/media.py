"""What customers sent as images, video, audio and files, for staff to see.

LINE keeps such content for a limited time behind its content endpoint; the first look
fetches it (through `fetch`, which the process builds around its LINE client: flows know
nothing of LINE's SDK) and keeps it in the database (`storage.media`), so later looks, on
any `serve` process, read it from there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import media
from kizuna.storage.db import transaction
from kizuna.storage.errors import Conflict, NotFound
from kizuna.storage.models import Direction, Interaction

KINDS = ("message.image", "message.video", "message.audio", "message.file")
# Larger content is shown once, not kept (a database is no place for long videos).
KEEP_AT_MOST = 20 * 1024 * 1024

Fetch = Callable[[str], Awaitable["tuple[bytes, str] | None"]]


class MediaUnavailable(Conflict):
    """LINE did not answer (an outage): try again later."""

    def __init__(self, message: str) -> None:
        super().__init__("media_unavailable", message)


@dataclass(frozen=True)
class Media:
    data: bytes
    content_type: str
    kind: str  # image | video | audio | file
    file_name: str | None = None


def media_message(interaction: Interaction) -> dict | None:
    """The LINE message object of an inbound image, video, audio or file, or None."""
    if interaction.direction != Direction.IN or interaction.kind not in KINDS:
        return None
    message = (interaction.payload or {}).get("message")
    return message if isinstance(message, dict) and isinstance(message.get("id"), str) else None


def sent_from_elsewhere(message: dict) -> bool:
    """An image or video LINE only points at (`contentProvider.type` external): it is at its
    own URL, not behind the content endpoint."""
    provider = message.get("contentProvider")
    return isinstance(provider, dict) and provider.get("type") == "external"


class MediaLibrary:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], fetch: Fetch) -> None:
        self.sessions = sessions
        self.fetch = fetch

    async def content(self, interaction_id: int) -> Media:
        async with self.sessions() as session:
            interaction = await session.get(Interaction, interaction_id)
            message = media_message(interaction) if interaction is not None else None
            if message is None or sent_from_elsewhere(message):
                raise NotFound("no content from LINE for this timeline row")
            kind = interaction.kind.removeprefix("message.")
            name = message.get("fileName") if isinstance(message.get("fileName"), str) else None
            kept = await media.get(session, message["id"])
        if kept is not None:
            return Media(kept.data, kept.content_type, kind, name)
        fetched = await self.fetch(message["id"])  # never inside a transaction
        if fetched is None:
            raise NotFound("LINE no longer has this content")
        data, content_type = fetched
        if len(data) <= KEEP_AT_MOST:
            async with transaction(self.sessions) as session:
                await media.put(session, message["id"], content_type, data)
        return Media(data, content_type, kind, name)
